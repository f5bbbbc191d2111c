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
    lines = [f"added {result.added} image(s) to {result.out} ({result.seconds:.1f} s); it now holds "
             f"{result.total} image(s)"
             + (f"; {result.already} file(s) were imported before" if result.already else "")]
    if result.new_patients:
        lines.append(f"  {result.new_patients} new patient(s)")
    if result.padded:
        lines.append(f"  {result.padded} image(s) were not square: fitted and padded with black")
    if result.unwindowed:
        lines.append(f"  {result.unwindowed} image(s) had no usable window: scaled by their own range")
    if result.relabelled:
        lines.append(f"  {result.relabelled} earlier image(s) took new labels from --labels")
    if result.unmatched_labels:
        lines.append(f"  {result.unmatched_labels} row(s) of --labels named no image")
    if result.unlabelled_total:
        lines.append(f"  {result.unlabelled_total} without Finding Labels (no row in --labels)"
                     + (f"; new: {_first(result.unlabelled)}" if result.unlabelled else ""))
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} file(s):")
        for kind, count in result.skipped_counts().items():
            files = [f"{name} ({detail})" for name, found, detail in result.skipped if found == kind]
            lines.append(f"  {kind}: {count}")
            lines += [f"    - {text}" for text in files[:SHOWN_FILES]]
            if count > SHOWN_FILES:
                lines.append(f"    ... and {count - SHOWN_FILES} more (--json lists all)")
    return "\n".join(lines)


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_FILES])
    return shown + (f", ... and {len(names) - SHOWN_FILES} more" if len(names) > SHOWN_FILES else "")
