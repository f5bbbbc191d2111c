"""What the Generate tab shows before exporting: the run's facts (no TensorFlow) and a preview grid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.options import option

PREVIEW_COLUMNS = 8


@dataclass
class PreviewConfig:
    run: str = option("", "Run folder holding generator.keras and config.json.")
    classes: list = option([], "Classes to draw, one row each (empty: all of the generator's classes).")
    seed: int = option(0, "First latent seed; the row's images use seeds seed, seed+1, ...")
    columns: int = option(PREVIEW_COLUMNS, "Images per class.")


def describe_run(run) -> dict:
    """The run's classes, size, latent length, model hash and trained step, from its files (no TensorFlow).
    The generator itself is loaded, in safe mode and checked, by the preview and export tasks."""
    from core.export.generator import GeneratorError, file_sha256, read_run_config
    from core.gan.runs import RunPaths, read_metrics

    paths = RunPaths(Path(run))
    config = read_run_config(paths.root)
    classes = config.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise GeneratorError(f"{paths.config}: no 'classes' list; was this run trained by cxr-workbench?")
    if not paths.generator.is_file():
        raise GeneratorError(f"{paths.generator}: missing; has this run saved a generator yet?")
    rows = read_metrics(paths.metrics)
    checkpoint = paths.latest_checkpoint()
    trained = max([int(rows[-1].get("step", 0)) if rows else 0,
                   int(checkpoint.stem.split("_")[-1]) if checkpoint else 0])
    return {"run_dir": str(paths.root.resolve()), "classes": list(classes), "size": config.get("size"),
            "latent_dim": config.get("latent_dim"), "sha256": file_sha256(paths.generator),
            "trained_steps": trained, "planned_steps": config.get("steps")}


def preview(config: PreviewConfig, job=None) -> np.ndarray:
    """A uint8 grid with one row per class, `columns` images each, from latent seeds seed, seed+1, ..."""
    from core.export.generator import load_generator
    from core.render import sample_grid

    generator = load_generator(config.run)
    if job is not None:
        job.check()
    classes = list(config.classes) or list(generator.classes)
    labels = np.repeat([generator.class_index(name) for name in classes], config.columns)
    seeds = np.tile(np.arange(config.seed, config.seed + config.columns), len(classes))
    images = generator.generate(labels, seeds)
    return sample_grid(images.astype(np.float32)[..., None] / 127.5 - 1.0, classes)
