"""`python main.py prepare --data DIR --classes "..." --size 128 --out CACHE [--json]` (no TensorFlow)."""
from __future__ import annotations

import argparse
import json
import sys

from core.data.cache import MULTI_LABEL_RULES, PrepareConfig, PrepareResult, prepare
from core.jobs import Job
from core.labels import DEFAULT_CLASSES
from cli.terminal import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="the NIH dataset folder")
    parser.add_argument("--out", required=True, metavar="CACHE", help="cache folder (new, empty or an earlier cache)")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), metavar="LIST",
                        help="comma-separated NIH labels, one class each (default: the seven project classes)")
    parser.add_argument("--size", type=int, default=128, help="side of the square images in pixels (default 128)")
    parser.add_argument("--multi-label", choices=MULTI_LABEL_RULES, default="exclude",
                        help="exclude: only images whose labels are exactly one class (default); "
                             "rarest: also images whose labels are all classes, given to the rarest of them")
    parser.add_argument("--seed", type=int, default=0, help="patient split seed when there are no official lists")
    parser.add_argument("--workers", type=int, default=0, help="decoding threads (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    config = PrepareConfig(data=args.data, out=args.out, classes=tuple(_split(args.classes)), size=args.size,
                           multi_label=args.multi_label, seed=args.seed, workers=args.workers)
    job = Job(ProgressBar("prepare") if sys.stderr.isatty() else None)
    result = prepare(config, job=job)
    print(json.dumps(result.to_json(), indent=2) if args.json else format_result(result))
    return 0


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def format_result(result: PrepareResult) -> str:
    verb = "reused" if result.reused else "prepared"
    lines = [f"{verb} {result.prepared} images in {result.path} ({result.seconds:.1f} s)"]
    width = max(len(name) for name in result.per_class)
    lines += [f"  {name:<{width}}  {count:>7}" for name, count in result.per_class.items()]
    if result.failed:
        lines.append(f"skipped {len(result.failed)} unreadable image(s), listed in {result.path / 'failed.txt'}:")
        lines += [f"  - {reason}" for _, reason in result.failed[:5]]
        if len(result.failed) > 5:
            lines.append(f"  ... and {len(result.failed) - 5} more")
    return "\n".join(lines)
