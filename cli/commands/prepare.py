"""`python main.py prepare --data DIR --out CACHE [--classes ...] [--size 128] [--json]` (no TensorFlow)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from cli.options import add_config_arguments, given_options
from core.data.cache import PrepareConfig, PrepareResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, PrepareConfig)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def build_config(args: argparse.Namespace) -> PrepareConfig:
    given = given_options(PrepareConfig, args)
    if "classes" in given:
        given["classes"] = tuple(given["classes"])
    return replace(PrepareConfig(), **given)


def run(args: argparse.Namespace) -> int:
    from cli.terminal import terminal_job
    from core.tasks import run_prepare

    result = run_prepare(build_config(args), terminal_job("prepare", progress=sys.stderr.isatty()))
    print(json.dumps(result.to_json(), indent=2) if args.json else format_result(result))
    return 0


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
