"""`python main.py import-dicom SOURCE OUT [--labels labels.csv] [--size 1024] [--force] [--json]` (no TensorFlow).

Turns a folder tree of DICOM files into a dataset in NIH layout; a second run adds only new files.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from dataclasses import replace

from cli.options import add_config_arguments, given_options
from core.data.dicom import ImportDicomConfig, ImportResult

SHOWN_FILES = 5   # per reason; --json lists every file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, ImportDicomConfig, positional=("source", "out"))
    parser.add_argument("--json", action="store_true", help="print one JSON object (lists every skipped file)")


def build_config(args: argparse.Namespace) -> ImportDicomConfig:
    return replace(ImportDicomConfig(), **given_options(ImportDicomConfig, args))


def run(args: argparse.Namespace) -> int:
    from cli.terminal import terminal_job
    from core.tasks import run_import_dicom

    # pydicom warns about every damaged file; the result lists each one with its reason instead
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    result = run_import_dicom(build_config(args), terminal_job("import-dicom", progress=sys.stderr.isatty()))
    print(json.dumps(result.to_json(), indent=2) if args.json else format_result(result))
    return 0


def format_result(result: ImportResult) -> str:
    """The result's summary, then the first files of each reason (and of the new unlabelled images)."""
    lines = result.summary_lines()
    lines[0] = lines[0].removesuffix(".") + f" ({result.seconds:.1f} s)."
    if result.unlabelled:
        lines.append("New images without labels:")
        lines += _first(result.unlabelled)
    for kind, count in result.skipped_counts().items():
        lines.append(f"{kind}:")
        lines += _first([f"{name} ({detail})" for name, found, detail in result.skipped if found == kind])
    return "\n".join(lines)


def _first(items: list[str]) -> list[str]:
    lines = [f"  - {item}" for item in items[:SHOWN_FILES]]
    if len(items) > SHOWN_FILES:
        lines.append(f"  ... and {len(items) - SHOWN_FILES} more (--json lists all)")
    return lines
