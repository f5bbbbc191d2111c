"""One entry point per long task: `run_<task>(config, job) -> result`, the same for the CLI and the app.

Each takes its task's complete config dataclass (the single source of its defaults, CLI options and
GUI form) and a `core.jobs.Job`, does everything the task needs (a training run prepares its cache
itself) and nothing else. It returns the result, or raises `UserError` (bad input) or `Cancelled`
(stopped on request). `cli/commands/*` parse arguments into the config and print; `app/workers.start_job`
runs the same function, by its name in `TASKS`, in a child process and turns the job's reports into
signals. Heavy modules are imported inside each function, so importing this module stays cheap and
never loads TensorFlow.
"""
from __future__ import annotations

from typing import Any, Callable

from core.jobs import Job


def run_prepare(config, job: Job):
    """PrepareConfig -> PrepareResult: decode and resize a dataset's images into a cache (no TensorFlow)."""
    from core.data.cache import prepare

    return prepare(config, job)


def run_demo_data(config, job: Job):
    """DemoConfig -> Path: the procedural phantom dataset in NIH layout (no TensorFlow)."""
    from core.data.phantoms import demo_data

    return demo_data(config, job)


def run_import_dicom(config, job: Job):
    """ImportDicomConfig -> ImportResult: a folder tree of DICOM files into (or onto) an NIH-layout dataset."""
    from core.data.dicom import import_dicom

    return import_dicom(config, job)


def run_train(config, job: Job):
    """TrainConfig -> RunSummary: prepare the data if needed, train or resume, save generator.keras.

    Each sample grid is also judged (`core.evaluation.live_quality`): a "quality" event with the share of
    each class's row that shows its class, so a front end can show when the model is good enough."""
    from core.evaluation.live_quality import QualityJob
    from core.gan.trainer import SAMPLE_COLUMNS, train

    watched = QualityJob(job, config, SAMPLE_COLUMNS)
    try:
        return train(config, watched)
    finally:
        watched.close()


def run_preview(config, job: Job):
    """PreviewConfig -> uint8 grid (one row per class) drawn by a run's generator."""
    from core.export.preview import preview

    return preview(config, job)


def run_export(config, job: Job):
    """ExportConfig -> ExportResult: labelled synthetic images in NIH layout, whole or not at all."""
    from core.export.export import export

    return export(config, job)


def run_evaluate(config, job: Job) -> dict:
    """EvaluateConfig -> report dict, written with its plots to RUN/evaluation."""
    from core.evaluation.evaluate import evaluate

    return evaluate(config, job)


def run_augment_bench(config, job: Job) -> dict:
    """AugmentBenchConfig -> report dict: does the synthetic data help a classifier?"""
    from core.evaluation.augment_bench import augment_bench

    return augment_bench(config, job)


TASKS: dict[str, Callable[[Any, Job], Any]] = {
    "prepare": run_prepare,
    "demo-data": run_demo_data,
    "import-dicom": run_import_dicom,
    "train": run_train,
    "preview": run_preview,
    "export": run_export,
    "evaluate": run_evaluate,
    "augment-bench": run_augment_bench,
}


def run_task(name: str, config, job: Job):
    """Run the task called `name` (a key of TASKS)."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
    return task(config, job)
