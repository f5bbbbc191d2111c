"""TensorBoard event files in the run folder, beside metrics.jsonl (`tensorboard --logdir RUN`).

Written with TensorFlow's summary writer (tf.summary, implemented by the tensorboard package): every
metrics row as scalars (losses, accuracies, speed), each sample grid as an image, the run config as
text, and evaluation results when they are computed. Everything is written at the moments the run
already writes metrics.jsonl or a sample PNG, never inside a training step, so a step is not slowed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SCALAR_GROUPS = {"d_loss_real": "loss", "d_loss_fake": "loss", "g_loss": "loss", "d_acc_real": "accuracy",
                 "d_acc_fake": "accuracy", "images_per_s": "speed"}


class RunBoard:
    """A summary writer for one run folder (created lazily; a failure to write never stops training)."""

    def __init__(self, folder: Path):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(folder))

    def config(self, config: dict) -> None:
        with self._writer.as_default():
            text = "```json\n" + json.dumps(config, indent=2) + "\n```"
            self._tf.summary.text("run/config", text, step=0)
        self._writer.flush()

    def metrics(self, row: dict) -> None:
        step = int(row["step"])
        with self._writer.as_default():
            for key, value in row.items():
                if key in ("step", "epoch") or not isinstance(value, (int, float)):
                    continue
                self._tf.summary.scalar(f"{SCALAR_GROUPS.get(key, 'other')}/{key}", float(value), step=step)
        self._writer.flush()

    def samples(self, step: int, grid: np.ndarray) -> None:
        with self._writer.as_default():
            self._tf.summary.image("samples/one row per class", grid[None, :, :, None], step=step)
        self._writer.flush()

    def evaluation(self, step: int, values: dict) -> None:
        """Flat numeric results of an evaluation or augmentation bench, under `evaluation/`."""
        with self._writer.as_default():
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tf.summary.scalar(f"evaluation/{key}", float(value), step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def log_results(run_dir, step: int | None, values: dict, text: dict | None = None) -> None:
    """Append evaluation or augmentation-bench results to RUN/tensorboard at the generator's trained
    `step` (0 when unknown): numeric `values` as scalars under evaluation/, `text` as text summaries.
    Opens and closes its own writer, so it can run after training ended, in any process."""
    from core.gan.runs import RunPaths

    board = RunBoard(RunPaths(Path(run_dir)).board)
    try:
        board.evaluation(int(step or 0), values)
        with board._writer.as_default():
            for key, value in (text or {}).items():
                board._tf.summary.text(f"evaluation/{key}", str(value), step=int(step or 0))
    finally:
        board.close()
