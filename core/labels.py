"""The NIH ChestX-ray14 label vocabulary and the project's default classes.

`Finding Labels` in Data_Entry is `|`-separated text over the 15 labels below. The BBox list spells
one of them differently (`Infiltrate`); `canonical_label` maps every known spelling to the Data_Entry one.
"""
from __future__ import annotations

NIH_LABELS: tuple[str, ...] = (
    "No Finding",
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)

DEFAULT_CLASSES: tuple[str, ...] = (
    "No Finding",
    "Atelectasis",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumothorax",
)

LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(NIH_LABELS)}

_SPELLINGS: dict[str, str] = {
    "Infiltrate": "Infiltration",
    "Pleural Thickening": "Pleural_Thickening",
    "No finding": "No Finding",
}


def canonical_label(text: str) -> str:
    """Return the Data_Entry spelling of a label; unknown labels come back stripped but unchanged."""
    name = text.strip()
    return _SPELLINGS.get(name, name)


def split_labels(finding_labels: str) -> list[str]:
    """Split a `Finding Labels` cell on `|` (never substring matching), canonical spelling, no empties."""
    return [canonical_label(part) for part in str(finding_labels).split("|") if part.strip()]


def parse_class_list(text: str) -> list[str]:
    """Parse a comma-separated class list as given on the command line; raises ValueError on unknown or repeated names."""
    names = [canonical_label(part) for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in LABEL_INDEX]
    if unknown:
        raise ValueError(f"unknown label(s): {', '.join(unknown)}; known labels are: {', '.join(NIH_LABELS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"label(s) named twice: {', '.join(repeated)}")
    return names
