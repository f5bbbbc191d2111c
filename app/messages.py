"""Core's messages in the window's words: command-line option names become the form's labels.

Core raises one message for both front ends, naming the option as the CLI spells it (`--lr-g`). In a
dialog a clinician-researcher sees the label of the field they edited instead ("Generator learning
rate"), and advice such as "pass --force" becomes the matching action in the window.
"""
from __future__ import annotations

import re
from dataclasses import fields

_ADVICE = (
    (re.compile(r"choose another --out or pass --force to replace it"),
     "choose another folder, or tick “Replace an earlier export”"),
    (re.compile(r"pass --resume to continue it"), "use Resume to continue it"),
)
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def _labels() -> dict[str, str]:
    from core.data.cache import PrepareConfig
    from core.gan.config import TrainConfig

    labels = {}
    for config in (PrepareConfig, TrainConfig):
        for f in fields(config):
            labels.setdefault(f.name.replace("_", "-"), f.metadata.get("label") or f.name.replace("_", " "))
    return labels


def plain(message: str) -> str:
    """`message` without command-line flags."""
    for pattern, words in _ADVICE:
        message = pattern.sub(words, message)
    labels = _labels()
    return _FLAG.sub(lambda m: f"“{labels.get(m.group(1), m.group(1).replace('-', ' '))}”", message)
