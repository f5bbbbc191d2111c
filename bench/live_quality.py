"""What the Train tab's live quality costs: training the judge once per run, and judging one sample grid.

    python bench/live_quality.py CACHE [--steps 800] [--size 64]

CACHE is a prepared cache (e.g. RUN/cache of a training run). The judge is the evaluation's classifier
(`core.evaluation.classifier`, 800 steps by default, shared with evaluate and export); the grid is the
trainer's (one row per class, `SAMPLE_COLUMNS` tiles). CPU seconds are printed beside wall seconds: on a
shared machine the wall time says more about the neighbours than about the code. The share of a time
budget is the judge's CPU time over the budget's CPU time on all cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from core.data.cache import PreparedCache
    from core.evaluation.classifier import ClassifierConfig, Embedder, train_classifier
    from core.evaluation.real_data import open_real_data
    from core.gan.presets import PRESETS
    from core.gan.trainer import SAMPLE_COLUMNS, configure_threads

    cores = os.cpu_count() or 1
    configure_threads(0)
    classes = list(PreparedCache.open(args.cache).classes)
    train_x, train_y = open_real_data(args.cache, classes, args.size).part("train")
    cpu, wall = cpu_seconds(), time.monotonic()
    model = train_classifier(train_x, train_y, len(classes), ClassifierConfig(steps=args.steps))
    judge_cpu, judge_wall = cpu_seconds() - cpu, time.monotonic() - wall
    embed = Embedder(model)
    grid = np.zeros((len(classes) * SAMPLE_COLUMNS, args.size, args.size), np.uint8)
    embed(grid)                                    # the first call builds the graph
    cpu, wall = cpu_seconds(), time.monotonic()
    for _ in range(10):
        embed(grid)
    grid_cpu, grid_wall = (cpu_seconds() - cpu) / 10, (time.monotonic() - wall) / 10
    print(f"load average {os.getloadavg()[0]:.1f} on {cores} cores; {len(train_y)} training images, "
          f"{len(classes)} classes, {args.size} px")
    print(f"judge, {args.steps} steps: {judge_cpu:.1f} CPU s ({judge_cpu / args.steps * 1000:.0f} ms/step), "
          f"{judge_wall:.1f} s wall")
    print(f"one {len(classes)}x{SAMPLE_COLUMNS} grid: {grid_cpu * 1000:.0f} CPU ms, {grid_wall * 1000:.0f} ms wall")
    for preset in PRESETS:
        print(f"share of {preset.name} ({preset.minutes:g} min on {cores} cores): "
              f"{judge_cpu / (preset.minutes * 60 * cores):.1%}")


if __name__ == "__main__":
    main()
