"""Worker side of the Generate tab: plain Python (no Qt), each run in a child process by app/process_job.py,
so TensorFlow is never imported into the window's process and never holds its interpreter lock."""
from __future__ import annotations

import numpy as np

PREVIEW_COLUMNS = 8


def describe_run(job, run: str) -> dict:
    """What the tab shows about a run, from its config.json (no TensorFlow: cheap enough for a thread).
    The generator itself is loaded, in safe mode and checked, by the preview and export jobs."""
    from pathlib import Path

    from core.export.generator import MODEL_FILE, GeneratorError, file_sha256, read_run_config

    config = read_run_config(Path(run))
    classes = config.get("classes")
    model = Path(run) / MODEL_FILE
    if not isinstance(classes, list) or not classes:
        raise GeneratorError(f"{Path(run) / 'config.json'}: no 'classes' list; was this run trained by cxr-workbench?")
    if not model.is_file():
        raise GeneratorError(f"{model}: missing; has this run saved a generator yet?")
    return {"run_dir": str(Path(run).resolve()), "classes": [str(c) for c in classes],
            "size": config.get("size"), "latent_dim": config.get("latent_dim"), "sha256": file_sha256(model)}


def preview_grid(job, run: str, classes: list[str], seed: int, emit=None) -> np.ndarray:
    """A uint8 grid with one row per class, PREVIEW_COLUMNS images each, latent seeds seed, seed+1, ..."""
    from core.render import sample_grid
    from core.export.generator import load_generator

    generator = load_generator(run)
    job.check()
    labels = np.repeat([generator.class_index(name) for name in classes], PREVIEW_COLUMNS)
    seeds = np.tile(np.arange(seed, seed + PREVIEW_COLUMNS), len(classes))
    images = generator.generate(labels, seeds)
    return sample_grid(images.astype(np.float32)[..., None] / 127.5 - 1.0, classes)


def export_images(job, config, emit=None):
    from core.export.export import export

    return export(config, job=job)
