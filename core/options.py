"""Fields of the task configs: each carries its help text, so one dataclass feeds the CLI, the GUI form and tests.

`option(default, help, choices=..., form=False, cli=False)` is a `dataclasses.field` whose metadata the
front ends read: `cli/options.py` turns every field into a command-line option, `app/config_form.py`
into a form row. A config dataclass is therefore the single source of its defaults and their meaning.
"""
from __future__ import annotations

from dataclasses import MISSING, Field, field


def option(default, help: str, *, choices=None, form: bool = True, cli: bool = True, **extra):
    """A config field with its help text; mutable defaults (lists, dicts) are copied per instance."""
    metadata = {"help": help, "form": form, "cli": cli, **extra}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f: Field):
    """The default value of a dataclass field (calling its factory), or None when it has none."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None
