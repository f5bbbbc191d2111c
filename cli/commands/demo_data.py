"""`python main.py demo-data OUT [--difficulty realistic] [--proportions nih | --counts "Mass=30,..."] [...]`:
write the procedural phantom dataset in NIH layout (no TensorFlow). Every `DemoConfig` field is an option."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from cli.options import add_config_arguments, given_options
from core.data.phantoms import DemoConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DemoConfig, positional=("out",))


def build_config(args: argparse.Namespace) -> DemoConfig:
    return replace(DemoConfig(), **given_options(DemoConfig, args))


def run(args: argparse.Namespace) -> int:
    from cli.terminal import terminal_job
    from core.tasks import run_demo_data

    start = time.monotonic()
    out = run_demo_data(build_config(args), terminal_job("demo-data"))
    print(f"demo dataset in {out} ({time.monotonic() - start:.1f} s)")
    return 0
