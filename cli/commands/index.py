"""`python main.py index --data DIR [--json]`: what is in an NIH dataset folder, and what is wrong with it."""
from __future__ import annotations

import argparse
import json
import sys

from core.data.dataset import open_dataset
from core.jobs import Job
from cli.terminal import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="the NIH dataset folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--split-seed", type=int, default=0, metavar="K",
                        help="seed of the patient-level split when there are no official lists (default 0)")


def run(args: argparse.Namespace) -> int:
    job = Job(ProgressBar("index") if sys.stderr.isatty() else None)
    summary = open_dataset(args.data, job=job, split_seed=args.split_seed).summary()
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The summary as aligned plain-text tables: totals, splits, labels, then the problems."""
    totals = [("folder", summary["root"]), ("data entry", summary["data_entry"]), ("rows", summary["rows"]),
              ("patients", summary["patients"]), ("images found", summary["images_found"]),
              ("images missing", summary["images_missing"]), ("boxes", summary["boxes"]),
              ("images with boxes", summary["images_with_boxes"])]
    totals += [(f"split {name}", count) for name, count in summary["splits"].items()]
    lines = _aligned(totals)
    width = max(len(name) for name in summary["labels"])
    lines += ["", f"{'label':<{width}}  {'images':>7}"]
    lines += _aligned(summary["labels"].items(), width=width)
    problems = summary["problems"]
    lines += ["", f"problems: {len(problems) or 'none'}"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def _aligned(pairs, width: int | None = None) -> list[str]:
    pairs = list(pairs)
    width = width or max(len(name) for name, _ in pairs)
    return [f"{name:<{width}}  {value:>7}" if isinstance(value, int) else f"{name:<{width}}  {value}"
            for name, value in pairs]
