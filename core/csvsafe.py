"""Spreadsheet-safe CSV cells: the one place every CSV the tool writes goes through.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a line break is run as a formula by Excel,
LibreOffice and Google Sheets when the CSV is opened (`=HYPERLINK(...)`, `@SUM(1)`, `+cmd|...`); the
OWASP "CSV injection" advice is to write such a cell with a leading `'`, which spreadsheets show as
text. Image names, labels and demographics come from files the user did not write, so every text cell
is neutralised on the way out. Cells that are plain numbers (`-2`, `+1.5e3`) are left alone: they
cannot run anything, and quoting them would turn a negative box coordinate into text for every tool.

The encoding is reversible, so our own readers give back exactly the text that was written:
`neutralise` adds one `'` to any cell that starts with optional `'`s then a formula character (so a
user's own `'=x` becomes `''=x`), and `restore` removes one `'` from such a cell.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Iterable

import pandas as pd

# ASCII triggers, and their full-width forms, which some Excel locales also evaluate.
FORMULA_START = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
_NEEDS_QUOTE = re.compile(f"'*[{re.escape(FORMULA_START)}]")
_QUOTED = re.compile(f"'+[{re.escape(FORMULA_START)}]")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(value: object) -> str:
    """The cell text a spreadsheet shows as text: `=1+2` -> `'=1+2`, `'=x` -> `''=x`, `-2` -> `-2`."""
    text = "" if value is None else str(value)
    if _NEEDS_QUOTE.match(text) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def restore(text: str) -> str:
    """Undo `neutralise`: the text as the user wrote it. Text `neutralise` leaves alone comes back as is."""
    return text[1:] if _QUOTED.match(text) else text


def csv_text(rows: Iterable[Iterable[object]], header: str | None = None) -> str:
    """CSV text ("\\n" line ends) with every cell neutralised; `header` is written verbatim as the first
    line (the NIH headers are fixed strings, some with more fields than the rows)."""
    out = io.StringIO()
    if header is not None:
        out.write(header + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
    return out.getvalue()


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text columns are neutralised (numeric columns cannot hold formulas)."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = frame[column].map(neutralise, na_action="ignore")
    return frame


def restore_frame(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Undo `neutralise_frame` on the text `columns` of a frame read back with `pd.read_csv(dtype=str)`."""
    for column in columns:
        if column in frame.columns:
            values = frame[column]
            quoted = values.str.match(_QUOTED.pattern, na=False)
            if quoted.any():
                frame.loc[quoted, column] = values[quoted].str.slice(1)
    return frame


def quoted(value: object, limit: int = 60) -> str:
    """A value from a file as quoted in a one-line message: `repr` (so line breaks show as `\\n`), cut to
    `limit` characters with the full length said, so a 10 MB field cannot flood a problem list."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
