"""Headless entry point: `python main.py SUBCOMMAND ...`.

Each subcommand lives in `cli/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their subcommand runs, so `index`, `demo-data` and `prepare` never
import TensorFlow and start fast. A command parses its options into its task's config
(`cli/options.py` builds the options from the config's fields) and runs the task from `core/tasks.py`.
Bad input raises `UserError`; it is printed as one line and the process exits with code 2, never with a
traceback. A task stopped with Ctrl+C ends with `Cancelled` and exit code 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import UserError
from core.jobs import Cancelled

COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("cli.commands.index", "summarise an NIH dataset folder"),
    "demo-data": ("cli.commands.demo_data", "write the procedural phantom dataset in NIH layout"),
    "import-dicom": ("cli.commands.import_dicom", "turn a folder of DICOM files into a dataset in NIH layout"),
    "prepare": ("cli.commands.prepare", "decode and resize images into a training cache"),
    "train": ("cli.commands.train", "train a class-conditional GAN"),
    "generate": ("cli.commands.generate", "export labelled synthetic images in NIH format"),
    "evaluate": ("cli.commands.evaluate", "measure the quality of a trained generator"),
    "augment-bench": ("cli.commands.augment_bench", "does synthetic data help a classifier?"),
}


def _command_name(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with `only`, import just that subcommand's module (keeps startup cheap)."""
    parser = argparse.ArgumentParser(prog="main.py", description="Synthetic chest X-ray workbench (headless commands).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command_name(argv)
    parser = build_parser(only=name if name in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Cancelled as stopped:
        print(f"stopped: {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
