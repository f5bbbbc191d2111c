"""`python main.py demo-data OUT`: write the procedural phantom dataset in NIH layout (no TensorFlow)."""
from __future__ import annotations

import argparse
import time

from core.jobs import Job
from core.data.phantoms import write_demo_dataset
from cli.terminal import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="new or empty folder (or an earlier demo dataset, which is replaced)")
    parser.add_argument("--per-class", type=int, default=40, help="single-label images per class (default 40)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    out = write_demo_dataset(args.out, per_class=args.per_class, size=args.size, seed=args.seed,
                             job=Job(ProgressBar("demo-data")))
    print(f"demo dataset in {out} ({time.monotonic() - start:.1f} s)")
    return 0
