"""`python main.py demo-data OUT`: write the procedural phantom dataset in NIH layout (no TensorFlow)."""
from __future__ import annotations

import argparse
import time

from cli.terminal import ProgressBar
from core.data.phantoms import DIFFICULTIES, PROPORTIONS, parse_counts, write_demo_dataset
from core.jobs import Job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="new or empty folder (or an earlier demo dataset, which is replaced)")
    parser.add_argument("--per-class", type=int, default=40,
                        help="single-label training images per class, all classes alike (default 40)")
    parser.add_argument("--proportions", choices=PROPORTIONS, default=None,
                        help="'nih': the classes in NIH single-label proportions (No Finding 60,361 ... Mass 2,139), "
                             "scaled by --largest with a --floor for the rare ones")
    parser.add_argument("--counts", default=None, metavar="CLASS=N,...",
                        help='single-label training images per class, e.g. "No Finding=280,Mass=30" '
                             "(classes left out get none)")
    parser.add_argument("--largest", type=int, default=280, help="with --proportions: images of the commonest class "
                                                                 "(default 280)")
    parser.add_argument("--floor", type=int, default=30, help="with --proportions: fewest images of any class "
                                                              "(default 30)")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="balanced test set of this many single-label images per class, written to "
                             "test_list.txt (the rest to train_val_list.txt); default 40 with --proportions or "
                             "--counts, otherwise none and readers split by patient themselves")
    parser.add_argument("--difficulty", choices=list(DIFFICULTIES), default="realistic",
                        help="finding sizes and contrasts: 'realistic' (default; like real films), 'hard' (smaller "
                             "and fainter), 'easy' (large and distinct, for quick tests)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    counts = parse_counts(args.counts, "--counts") if args.counts is not None else None
    out = write_demo_dataset(args.out, per_class=args.per_class, size=args.size, seed=args.seed,
                             job=Job(ProgressBar("demo-data")), difficulty=args.difficulty,
                             proportions=args.proportions, counts=counts, largest=args.largest, floor=args.floor,
                             test_per_class=args.test_per_class)
    print(f"demo dataset in {out} ({time.monotonic() - start:.1f} s)")
    return 0
