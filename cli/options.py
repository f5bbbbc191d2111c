"""Command-line options built from a task config dataclass (fields made with `core.options.option`).

Every field becomes `--field-name` with the field's help text and default; options left out on the
command line stay `None` in the namespace, so `given_options` returns only what the user typed and a
resumed config changes only there. Lists are comma-separated, booleans get `--x/--no-x`.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from core.options import default_of


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_config_arguments(parser: argparse.ArgumentParser, config_type, skip=(), positional=()) -> None:
    """One option per field of `config_type` (fields in `skip` or with cli=False are left out);
    names in `positional` become positional arguments."""
    for f in fields(config_type):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        default = default_of(f)
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown!s})" if shown not in ("", None) \
            else f.metadata.get("help", "")
        help_text = help_text.replace("%", "%%")
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif isinstance(default, (list, tuple)):
            parser.add_argument(_flag(f.name), type=_comma_list, default=None, metavar="LIST", help=help_text)
        else:
            parser.add_argument(_flag(f.name), type=type(default) if default is not None else str, default=None,
                                choices=f.metadata.get("choices"), help=help_text)


def given_options(config_type, args: argparse.Namespace, skip=()) -> dict:
    """The fields of `config_type` that were given on the command line, by field name."""
    return {f.name: getattr(args, f.name) for f in fields(config_type)
            if f.name not in skip and getattr(args, f.name, None) is not None}
