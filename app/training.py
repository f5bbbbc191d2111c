"""Worker side of the Train tab: plain Python (no Qt), run in a child process by app/process_job.py."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.errors import UserError
from core.gan.config import TrainConfig


def train_job(job, config: TrainConfig, dataset: str, classes: tuple[str, ...], emit):
    """Worker side: prepare the cache if needed, then train; streams ('metrics'|'samples'|'log', ...)."""
    from core.gan.trainer import TrainCallback, train

    if not config.cache:
        from core.data.cache import PrepareConfig, prepare

        if not dataset:
            raise UserError("Train: open a dataset first, or give a prepared cache folder")
        out = Path(config.run) / "cache"
        emit(("log", f"preparing {', '.join(classes)} at {config.size} px from {dataset} into {out}"))
        result = prepare(PrepareConfig(data=dataset, out=str(out), classes=classes, size=config.size), job=job)
        emit(("log", f"prepared {result.prepared} images ({'reused' if result.reused else 'new'}); "
                     f"{len(result.failed)} unreadable"))
        config = replace(config, cache=str(out))
    job.check()

    class Forward(TrainCallback):
        def on_metrics(self, row):
            emit(("metrics", row))

        def on_samples(self, step, grid, path):
            emit(("samples", step, grid))

        def on_log(self, text):
            emit(("log", text))

    return train(config, job=job, callbacks=[Forward()])
