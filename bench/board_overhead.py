"""What TensorBoard logging costs a training run: the writes per metrics row and per sample grid, against
the steps they cover.

    .venv/bin/python bench/board_overhead.py [--size 64] [--steps 30]

Times `GanEngine.train_step` of the default model and the RunBoard calls the loop makes (one metrics row
every `log_every` steps, one grid every sample interval), and prints the overhead as a share of the
training time between two rows. The target: not measurable (well under 1%).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    import tensorflow as tf

    from core.gan.board import RunBoard
    from core.gan.config import TrainConfig
    from core.gan.engine import GanEngine
    from core.render import sample_grid

    config = TrainConfig(run="unused", size=args.size)
    engine = GanEngine(config, 7)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.integers(0, 255, (config.batch, args.size, args.size), np.uint8)),
             tf.constant(rng.integers(0, 7, config.batch).astype(np.int32)))
    engine.train_step(batch, 0)                       # trace
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        values = engine.train_step(batch, step)
    step_s = (time.perf_counter() - start) / args.steps
    board = RunBoard(Path(tempfile.mkdtemp()) / "tensorboard")
    board.config(config.to_json())
    row = {"step": 1, "epoch": 0.1, **values, "images_per_s": 100.0, "elapsed_s": 1.0}
    grid = sample_grid(np.zeros((56, args.size, args.size, 1), np.float32), ["class"] * 7)
    start = time.perf_counter()
    for i in range(50):
        board.metrics({**row, "step": i})
    row_s = (time.perf_counter() - start) / 50
    start = time.perf_counter()
    for i in range(10):
        board.samples(i, grid)
    grid_s = (time.perf_counter() - start) / 10
    every = config.log_every
    print(f"{'what':<34} {'ms':>8}")
    print(f"{'one training step':<34} {step_s * 1000:8.1f}")
    print(f"{'one metrics row to TensorBoard':<34} {row_s * 1000:8.2f}")
    print(f"{'one sample grid to TensorBoard':<34} {grid_s * 1000:8.2f}")
    print(f"overhead per {every} steps (one row): {row_s / (every * step_s):.3%} of the training time; "
          f"a grid per {every} steps would add {grid_s / (every * step_s):.3%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
