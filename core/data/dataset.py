"""Open an NIH ChestX-ray14 dataset folder into one table (`open_dataset` -> `DatasetIndex`).

The readers follow the real ChestX-ray14 metadata files and their quirks:
- Data_Entry (2017 or v2020 release, `.csv` or `.csv.gz`): header names contain commas inside brackets
  (`OriginalImage[Width,Height]`), so columns are located by position: the header is read once to find
  where each column starts and how many raw fields it spans, then every row is cut at those positions.
  A trailing empty field (the 2017 release's trailing comma) is accepted.
- BBox list (`.csv` or `.csv.gz`): read purely by position (image, label, x, y, w, h); its header has
  9 fields, rows 6 or 9. A label outside the 15 is kept as data (shown, edited, exported) and reported.
- Image files: the three layouts (`images_0NN/images/`, `images/`, the root itself) are resolved by
  listing each folder once, never by a stat per row. Only regular files count: a named pipe or a device
  called `x.png` is reported and never opened.
- Cells our own CSV writers neutralised against spreadsheet formulas (`'=x`, see `core/csvsafe.py`) read
  back as the text the user wrote, so a BBox list exported by the app opens like the original.
- Values quoted in problem messages are cut to a readable length (`core.csvsafe.quoted`), and at most
  `_SHOW_NAMES` distinct unknown labels are listed one by one.
Bad rows are counted and reported in `problems` (naming the file and the first line numbers), never
skipped silently; only a dataset that cannot be used at all raises `DatasetError`.
"""
from __future__ import annotations

import csv
import gzip
import io
import operator
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from core.csvsafe import quoted, restore
from core.errors import UserError
from core.jobs import Job
from core.labels import LABEL_INDEX, NIH_LABELS, canonical_label

DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_NAME = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"

# Data_Entry columns: (header name, table columns it fills). Width in raw fields = number of table columns.
_ENTRY_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Image Index", ("image",)),
    ("Finding Labels", ("finding_labels",)),
    ("Follow-up #", ("follow_up",)),
    ("Patient ID", ("patient_id",)),
    ("Patient Age", ("age",)),
    ("Patient Gender", ("sex",)),
    ("View Position", ("view",)),
    ("OriginalImage[Width,Height]", ("orig_width", "orig_height")),
    ("OriginalImagePixelSpacing[x,y]", ("spacing_x", "spacing_y")),
)
_OPTIONAL_ENTRY_COLUMNS = {"OriginalImage[Width,Height]", "OriginalImagePixelSpacing[x,y]"}

TABLE_COLUMNS = ("image", "path", "finding_labels", "follow_up", "patient_id", "age", "sex", "view",
                 "orig_width", "orig_height", "spacing_x", "spacing_y", "n_boxes", "split")
_TEXT_COLUMNS = ("image", "path", "finding_labels", "sex", "view", "split")
BOX_COLUMNS = ("image", "label", "x", "y", "w", "h")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test when there are no official lists
MAX_PLAUSIBLE_AGE = 100
_SHOW_LINES = 3  # how many line numbers a problem message quotes
_SHOW_NAMES = 10  # how many distinct unknown labels get a problem line each


class DatasetError(UserError):
    """The dataset folder cannot be used: a missing or unreadable file, missing columns, no usable rows."""


def is_safe_image_name(name: str) -> bool:
    """A bare file name: no path separator, no `..`, not empty. Anything else is never opened."""
    return bool(name) and "/" not in name and "\\" not in name and ".." not in name and "\0" not in name


@dataclass
class DatasetIndex:
    """One NIH dataset folder, opened. See docs/ARCHITECTURE.md for the column contract."""

    root: Path
    data_entry: Path
    table: pd.DataFrame
    labels: np.ndarray
    boxes: pd.DataFrame
    problems: list[str] = field(default_factory=list)

    def label_counts(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """Images carrying each of the 15 labels (in `NIH_LABELS` order), over the rows in `mask`."""
        rows = self.labels if mask is None else self.labels[np.asarray(mask, dtype=bool)]
        return dict(zip(NIH_LABELS, (int(n) for n in rows.sum(axis=0))))

    def summary(self) -> dict:
        """The `index --json` object."""
        table = self.table
        found = int((table["path"] != "").sum())
        splits = table["split"].value_counts()
        return {
            "root": str(self.root),
            "data_entry": self.data_entry.name,
            "rows": len(table),
            "patients": int(table["patient_id"].nunique()),
            "images_found": found,
            "images_missing": len(table) - found,
            "boxes": len(self.boxes),
            "images_with_boxes": int((table["n_boxes"] > 0).sum()),
            "labels": self.label_counts(),
            "splits": {name: int(splits.get(name, 0)) for name in ("train", "val", "test")},
            "problems": list(self.problems),
        }

    def filter(self, labels: Iterable[str] = (), match: str = "any", sex: str | Iterable[str] | None = None,
               age: tuple[int | None, int | None] | None = None, view: str | Iterable[str] | None = None,
               patient: int | Iterable[int] | None = None, has_box: bool | None = None,
               file_present: bool | None = None, text: str | None = None,
               split: str | Iterable[str] | None = None) -> np.ndarray:
        """Boolean row mask; every given criterion must hold. `None`/empty means "any".

        `match` says how `labels` combine: "any" (carries at least one), "all" (carries every one),
        "only" (carries at least one and nothing outside them). `age` is an inclusive (low, high)
        range, either end may be None; rows without an age fail any age criterion.
        """
        table = self.table
        mask = np.ones(len(table), dtype=bool)
        wanted = [canonical_label(name) for name in labels]
        if wanted:
            unknown = [name for name in wanted if name not in LABEL_INDEX]
            if unknown:
                raise ValueError(f"unknown label(s): {', '.join(unknown)}")
            selected = np.zeros(len(NIH_LABELS), dtype=bool)
            selected[[LABEL_INDEX[name] for name in wanted]] = True
            mask &= _label_mask(self.labels, selected, match)
        if sex is not None:
            mask &= _in_upper(table["sex"], sex)
        if view is not None:
            mask &= _in_upper(table["view"], view)
        if split is not None:
            mask &= table["split"].isin(_as_list(split)).to_numpy()
        if patient is not None:
            mask &= table["patient_id"].isin([int(p) for p in _as_list(patient)]).to_numpy()
        if age is not None:
            low, high = age
            ages = table["age"]
            inside = ages.notna()
            if low is not None:
                inside &= ages >= low
            if high is not None:
                inside &= ages <= high
            mask &= inside.to_numpy(dtype=bool, na_value=False)
        if has_box is not None:
            mask &= (table["n_boxes"].to_numpy() > 0) == has_box
        if file_present is not None:
            mask &= (table["path"].to_numpy() != "") == file_present
        if text:
            mask &= table["image"].str.contains(text, case=False, regex=False).to_numpy(dtype=bool)
        return mask

    def replace_boxes(self, boxes: pd.DataFrame) -> None:
        """Swap in a new box table (e.g. the annotation store's overlay) and recount `n_boxes`."""
        missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
        if missing:
            raise ValueError(f"box table lacks column(s): {', '.join(missing)}")
        self.boxes = boxes.reset_index(drop=True)
        self.table["n_boxes"] = _count_boxes(self.table["image"], self.boxes)


def open_dataset(root: str | os.PathLike, job: Job | None = None, split_seed: int = 0) -> DatasetIndex:
    """Read the NIH folder at `root`. Raises `DatasetError` when it cannot be used at all."""
    job = job or Job()
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    problems: list[str] = []
    entry_path = _find_data_entry(root, problems)

    folders = _image_folders(root)
    total = len(folders) + 3  # Data_Entry, each folder, boxes, split

    def before_folder(i: int, folder: str) -> None:
        job.report(1 + i, total, f"listing {os.path.relpath(folder, root)}")
        job.check()

    job.report(0, total, f"reading {entry_path.name}")
    table, line_numbers = _read_data_entry(entry_path, problems)
    labels = _multi_hot(table["finding_labels"].to_numpy(), line_numbers, entry_path.name, problems)
    job.check()
    table["path"] = _resolve_paths(root, folders, table["image"], before_folder, problems)

    job.report(total - 2, total, f"reading {BBOX_NAME}")
    try:
        boxes = _read_boxes(_optional_file(root, BBOX_NAME, problems), set(table["image"].to_numpy(dtype=object)),
                            problems)
    except DatasetError as error:  # the images and labels are still usable without boxes
        problems.append(f"{error}; no boxes loaded")
        boxes = _no_boxes()
    table["n_boxes"] = _count_boxes(table["image"], boxes)
    job.check()

    job.report(total - 1, total, "splitting by patient")
    table["split"] = _assign_splits(root, table, split_seed, problems)
    job.report(total, total, "done")
    table = table[list(TABLE_COLUMNS)].astype({c: "str" for c in _TEXT_COLUMNS})
    return DatasetIndex(root, entry_path, table, labels, boxes, problems)


# ---------------------------------------------------------------------------------------------- files

def _find_data_entry(root: Path, problems: list[str]) -> Path:
    found = [root / (name + ext) for name in DATA_ENTRY_NAMES for ext in ("", ".gz")
             if (root / (name + ext)).is_file()]
    if not found:
        raise DatasetError(f"{root}: no Data_Entry file (expected one of "
                           f"{', '.join(DATA_ENTRY_NAMES)}, optionally .gz)")
    if len(found) > 1:
        problems.append(f"{root}: several Data_Entry files ({', '.join(p.name for p in found)}); "
                        f"using {found[0].name}")
    return found[0]


def _optional_file(root: Path, name: str, problems: list[str]) -> Path:
    """`root/name`, or `root/name.gz` when only that exists (the path returned may not exist)."""
    plain, packed = root / name, root / (name + ".gz")
    if packed.is_file():
        if not plain.is_file():
            return packed
        problems.append(f"{root}: both {name} and {packed.name}; using {name}")
    return plain


def _read_text(path: Path) -> str:
    """The whole file as text; `.gz` (or gzip magic) is decompressed. Decode errors are `DatasetError`."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(f"{path.name}: line {line} is not UTF-8 text (byte {error.start})") from error


def _csv_rows(text: str, unreadable: list[int]) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank CSV record. A record the csv module refuses (a field
    over its 128 KB limit) goes to `unreadable` by line number, and reading goes on after it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            unreadable.append(reader.line_num)
            continue
        if row and any(row):
            yield reader.line_num, row


def _lines_text(lines: Iterable[int]) -> str:
    lines = list(lines)
    shown = ", ".join(str(n) for n in lines[:_SHOW_LINES])
    return f"line {shown}" if len(lines) == 1 else f"lines {shown}" + (", ..." if len(lines) > _SHOW_LINES else "")


def _report(problems: list[str], file: str, what: str, lines: np.ndarray, action: str) -> None:
    """Append "<file>: <n> row(s) <what> (lines a, b, c, ...); <action>" when `lines` is not empty."""
    if len(lines):
        rows = "row" if len(lines) == 1 else "rows"
        problems.append(f"{file}: {len(lines)} {rows} {what} ({_lines_text(lines)}); {action}")


def _report_unknown_labels(problems: list[str], file: str, unknown: dict[str, np.ndarray], action: str) -> None:
    """One problem per unknown label (most rows first), at most `_SHOW_NAMES`, then one for the rest."""
    ranked = sorted(unknown.items(), key=lambda item: (-len(item[1]), item[0]))
    for name, lines in ranked[:_SHOW_NAMES]:
        _report(problems, file, f"with unknown label {quoted(name)}", np.sort(lines), action)
    rest = ranked[_SHOW_NAMES:]
    if rest:
        lines = np.sort(np.concatenate([lines for _, lines in rest]))
        _report(problems, file, f"with {len(rest)} other unknown labels", lines, action)


# ----------------------------------------------------------------------------------------- Data_Entry

def _normalise_header(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()


def _header_layout(path: Path, header: list[str]) -> tuple[dict[str, int], int]:
    """Map each table column to its field position in the data rows; also return the data field count.

    A name with a comma inside brackets (`OriginalImage[Width,Height]`) is split over several header
    fields by a CSV reader, and its values fill one data field per part.
    """
    known = {_normalise_header(name): columns for name, columns in _ENTRY_COLUMNS}
    while header and not header[-1].strip():
        header = header[:-1]
    layout: dict[str, int] = {}
    position = field_count = 0
    while position < len(header):
        width = 1
        name = header[position]
        while "[" in name and "]" not in name and position + width < len(header):
            name += "," + header[position + width]
            width += 1
        columns = known.get(_normalise_header(name))
        if columns and columns[0] not in layout:
            layout.update((column, field_count + offset) for offset, column in enumerate(columns))
        field_count += len(columns) if columns else name.count(",") + 1
        position += width
    missing = [name for name, columns in _ENTRY_COLUMNS
               if columns[0] not in layout and name not in _OPTIONAL_ENTRY_COLUMNS]
    if missing:
        raise DatasetError(f"{path.name}: missing required column(s): {', '.join(missing)}")
    return layout, field_count


_EntryRows = tuple[dict[str, int], int, dict[str, "np.ndarray | tuple[str, ...]"], list[int], list[int]]


def _read_data_entry(path: Path, problems: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Read Data_Entry into the typed table (without path/n_boxes/split) and each row's line number."""
    text = _read_text(path).replace("\r\n", "\n")  # CRLF (2017 release) -> LF; harmless for the csv path
    plain = not any(mark in text for mark in ('"', "\0", "\r"))
    layout, n_fields, raw, lines, bad_lines = (_plain_entry_rows if plain else _quoted_entry_rows)(path, text)
    if bad_lines and not lines:
        raise DatasetError(f"{path.name}: all {len(bad_lines)} rows have the wrong number of fields "
                           f"(expected {n_fields}; {_lines_text(bad_lines)})")
    _report(problems, path.name, f"with the wrong number of fields (expected {n_fields})",
            np.asarray(bad_lines), "skipped")
    if not lines:
        raise DatasetError(f"{path.name}: no image rows (empty dataset)")
    return _typed_table(path.name, raw, np.asarray(lines, dtype=np.int64), problems)


def _plain_entry_rows(path: Path, text: str) -> _EntryRows:
    """Fast path for text without quotes, NULs or lone CRs (the real files): Python only counts commas
    per line to find the rows that fit; pandas' C parser splits those (~5x faster than `csv`)."""
    numbered = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip(",")]
    if not numbered:
        raise DatasetError(f"{path.name}: the file is empty")
    layout, n_fields = _header_layout(path, numbered[0][1].split(","))
    good, lines, bad_lines = [], [], []
    widest = n_fields
    for number, line in numbered[1:]:
        n_found = line.count(",") + 1
        # exactly n_fields, or more when the extra ones are empty (the 2017 trailing comma): then the line
        # without its trailing commas has at most n_fields fields
        if n_found == n_fields or (n_found > n_fields and line.rstrip(",").count(",") < n_fields):
            good.append(line)
            lines.append(number)
            if n_found > widest:
                widest = n_found
        else:
            bad_lines.append(number)
    if not good:
        return layout, n_fields, {}, lines, bad_lines
    frame = pd.read_csv(io.StringIO("\n".join(good)), header=None, names=list(range(widest)),
                        usecols=list(layout.values()), dtype=str, na_filter=False, quoting=csv.QUOTE_NONE,
                        engine="c")
    if len(frame) != len(good):  # the C tokenizer saw the lines differently: trust the csv module instead
        return _quoted_entry_rows(path, text)
    raw = {column: frame[position].to_numpy(dtype=object) for column, position in layout.items()}
    return layout, n_fields, raw, lines, bad_lines


def _quoted_entry_rows(path: Path, text: str) -> _EntryRows:
    """General path with Python's `csv` (quoted fields, odd line ends). A record the csv module cannot
    read (a field over 128 KB) counts as a row with the wrong number of fields."""
    unreadable: list[int] = []
    rows = iter(_csv_rows(text, unreadable))
    header = next(rows, None)
    if header is None:
        raise DatasetError(f"{path.name}: the file is empty")
    layout, n_fields = _header_layout(path, header[1])
    pick = operator.itemgetter(*layout.values())
    good, lines, bad_lines = [], [], []
    for number, row in rows:
        if len(row) == n_fields or (len(row) > n_fields and not any(row[n_fields:])):
            good.append(pick(row))
            lines.append(number)
        else:
            bad_lines.append(number)
    bad_lines = sorted(bad_lines + [line for line in unreadable if line > header[0]])
    return layout, n_fields, dict(zip(layout, zip(*good))), lines, bad_lines


def _typed_table(file: str, raw: dict[str, np.ndarray | tuple[str, ...]], lines: np.ndarray,
                 problems: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Turn raw text columns into typed ones; drop rows that cannot be used, reporting each kind."""
    n = len(lines)
    image = np.array([name.strip() for name in raw["image"]], dtype=object)
    for i in np.flatnonzero(np.fromiter((name[:1] == "'" for name in image), dtype=bool, count=n)):
        image[i] = restore(image[i])
    table = pd.DataFrame({"image": image, "finding_labels": _clean_text(raw["finding_labels"])})
    patient, _ = _to_int(raw["patient_id"], 0, 10**12)
    table["patient_id"] = patient
    bad_patient = patient.isna().to_numpy()

    unsafe = _unsafe_names(image)
    duplicate = table["image"].duplicated().to_numpy() & ~unsafe
    _report(problems, file, "with an image name that is empty or has a path separator or '..'",
            lines[unsafe], "rejected, never opened")
    _report(problems, file, "with an image name seen before", lines[duplicate], "kept the first")
    _report(problems, file, "without an integer Patient ID", lines[bad_patient & ~unsafe & ~duplicate],
            "skipped")
    keep = ~(unsafe | duplicate | bad_patient)
    if not keep.any():
        raise DatasetError(f"{file}: no usable image rows (empty dataset)")

    table["follow_up"], bad_follow = _to_int(raw["follow_up"], 0, 10**9)
    _report(problems, file, "with a Follow-up # that is not an integer", lines[bad_follow & keep], "left empty")
    age, bad_age = _to_int(raw["age"], 0, 10**4, suffix="Y")
    table["age"] = age
    _report(problems, file, "with an unreadable Patient Age", lines[bad_age & keep], "left empty")
    over = (age > MAX_PLAUSIBLE_AGE).to_numpy(dtype=bool, na_value=False) & keep
    if over.any():
        _report(problems, file, f"with Patient Age over {MAX_PLAUSIBLE_AGE}, up to {int(age[over].max())}",
                lines[over], "kept")
    table["sex"] = _clean_text(raw["sex"], upper=True)
    table["view"] = _clean_text(raw["view"], upper=True)
    blank = ("",) * n  # the size and spacing columns are optional
    for column in ("orig_width", "orig_height"):
        table[column], _ = _to_int(raw.get(column, blank), 0, 10**6)
    for column in ("spacing_x", "spacing_y"):
        table[column] = _to_float(raw.get(column, blank))
    table = table[keep].reset_index(drop=True)
    table["patient_id"] = table["patient_id"].astype(np.int64)
    return table, lines[keep]


def _unsafe_names(names: np.ndarray) -> np.ndarray:
    """Mask of names `is_safe_image_name` rejects; one substring scan first, as almost all files are clean."""
    if len(names) == 0:
        return np.zeros(0, dtype=bool)
    joined = "\n".join(names)
    if names[0] and names[-1] and not any(mark in joined for mark in ("/", "\\", "..", "\0", "\n\n")):
        return np.zeros(len(names), dtype=bool)
    return ~np.fromiter((is_safe_image_name(name) for name in names), dtype=bool, count=len(names))


def _clean_text(values: tuple[str, ...], upper: bool = False) -> np.ndarray:
    """Stripped (and upper-cased) cells as the user wrote them (`core.csvsafe.restore`), computed once per
    distinct cell: these columns repeat a lot."""
    codes, cells = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    cleaned = np.array([restore(c.strip()).upper() if upper else restore(c.strip()) for c in cells], dtype=object)
    return cleaned[codes]


def _to_int(values: tuple[str, ...], low: int, high: int, suffix: str = "") -> tuple[pd.Series, np.ndarray]:
    """Parse integers (leading zeros and a `suffix` like the 2017 ages' `Y` allowed) into an Int64 series;
    also a mask of cells that are not empty and not such an integer in [low, high]. Once per distinct cell."""
    codes, cells = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    text = [c.strip().upper().removesuffix(suffix) for c in cells]
    number = _numbers(text)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(number) & (number % 1 == 0) & (number >= low) & (number <= high)
    number[~valid] = np.nan
    bad = ~valid & np.array([t != "" for t in text], dtype=bool)
    return pd.Series(number[codes]).astype("Int64"), bad[codes]


def _to_float(values: tuple[str, ...]) -> np.ndarray:
    codes, cells = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return _numbers([c.strip() for c in cells])[codes]


def _numbers(text: list[str]) -> np.ndarray:
    """float64 per cell, NaN where the cell is not a finite number."""
    number = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype=float, copy=True)
    number[~np.isfinite(number)] = np.nan
    return number


def _multi_hot(finding_labels: np.ndarray, lines: np.ndarray, file: str, problems: list[str]) -> np.ndarray:
    """Bool (rows, 15) in `NIH_LABELS` order, by splitting each distinct label string once.

    The real file has ~800 distinct strings over 112,120 rows, so this is a small loop plus one
    numpy gather; `str.get_dummies` is ~19x slower. Unknown labels stay in the text and are reported.
    """
    codes, uniques = pd.factorize(finding_labels, use_na_sentinel=False)
    per_unique = np.zeros((len(uniques), len(NIH_LABELS)), dtype=bool)
    unknown: dict[str, list[int]] = {}
    for i, text in enumerate(uniques):
        for part in str(text).split("|"):
            name = canonical_label(part)
            if name in LABEL_INDEX:
                per_unique[i, LABEL_INDEX[name]] = True
            elif name:
                unknown.setdefault(name, []).append(i)
    if unknown:  # the lines of each distinct string, found by one sort (not one scan per unknown name)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        rows_of = [lines[order[bounds[i]:bounds[i + 1]]] for i in range(len(uniques))]
        _report_unknown_labels(problems, file, {name: rows_of[ids[0]] if len(ids) == 1
                                                else np.concatenate([rows_of[i] for i in ids])
                                                for name, ids in unknown.items()},
                               "kept in finding_labels, not in the label matrix")
    no_label = ~per_unique.any(axis=1)
    _report(problems, file, "without any known label", lines[no_label[codes]], "kept")
    return per_unique[codes]


# ------------------------------------------------------------------------------------------- images

def _image_folders(root: Path) -> list[str]:
    """Folders that may hold the PNGs, in a fixed order: images_NNN[/images], images/, the root."""
    folders: list[str] = []
    with os.scandir(root) as entries:
        numbered = [e for e in entries if e.is_dir() and re.fullmatch(r"images_\d+", e.name)]
    for entry in sorted(numbered, key=lambda e: e.name):
        inner = os.path.join(entry.path, "images")
        folders.append(inner if os.path.isdir(inner) else entry.path)
    if (root / "images").is_dir():
        folders.append(str(root / "images"))
    folders.append(str(root))
    return folders


def _resolve_paths(root: Path, folders: list[str], images: pd.Series, before_folder: Callable[[int, str], None],
                   problems: list[str]) -> np.ndarray:
    """Each image's path, or "" if no folder holds it. Each folder is listed once (no stat per row)."""
    where: dict[str, str] = {}
    duplicates = 0
    irregular: list[str] = []
    for i, folder in enumerate(folders):
        before_folder(i, folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith((".png", ".PNG")):
                    if not _is_regular(entry):
                        irregular.append(entry.name)
                    elif entry.name in where:
                        duplicates += 1
                    else:
                        where[entry.name] = folder
    if irregular:
        problems.append(f"{root}: {len(irregular)} PNG name(s) are not regular files (named pipes, devices, "
                        f"folders or broken links: {', '.join(quoted(n) for n in sorted(irregular)[:_SHOW_LINES])}"
                        f"{', ...' if len(irregular) > _SHOW_LINES else ''}); never opened, counted as missing")
    if duplicates:
        problems.append(f"{root}: {duplicates} PNG name(s) appear in more than one image folder; "
                        f"using the first (folders in name order)")
    sep = os.sep
    return np.array([folder + sep + name if (folder := where.get(name)) else ""
                     for name in images.to_numpy(dtype=object)], dtype=object)


def _is_regular(entry: os.DirEntry) -> bool:
    """True for a regular file (symlinks followed). The type comes from the directory listing, so plain
    files cost no stat call."""
    try:
        return entry.is_file()
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- boxes

def _read_boxes(path: Path, known_images: set[str], problems: list[str]) -> pd.DataFrame:
    """The BBox list by position: image, label, x, y, w, h. A missing file means no boxes; an unreadable
    one raises `DatasetError` (the caller reports it and goes on without boxes)."""
    if not path.is_file():
        return _no_boxes()
    unreadable: list[int] = []
    rows = iter(_csv_rows(_read_text(path), unreadable))
    header = next(rows, None)
    if header is not None and _normalise_header(header[1][0]) != "imageindex":
        raise DatasetError(f"{path.name}: line {header[0]} is not the BBox header "
                           f"(expected 'Image Index,Finding Label,Bbox [x,y,w,h]')")
    records: list[tuple[str, str, float, float, float, float]] = []
    bad, unsafe, unknown_image = [], [], []
    unknown_labels: dict[str, list[int]] = {}
    for line, row in rows:
        parsed = _parse_box_row(row)
        if parsed is None:
            bad.append(line)
        elif not is_safe_image_name(parsed[0]):
            unsafe.append(line)
        elif parsed[0] not in known_images:
            unknown_image.append(line)
        else:
            if parsed[1] not in LABEL_INDEX:
                unknown_labels.setdefault(parsed[1], []).append(line)
            records.append(parsed)
    _report(problems, path.name, "that are not 'image,label,x,y,w,h' with numbers and w, h > 0",
            np.asarray(bad), "skipped")
    _report(problems, path.name, "with an image name that has a path separator or '..'",
            np.asarray(unsafe), "rejected")
    _report(problems, path.name, "for an image not in Data_Entry", np.asarray(unknown_image), "skipped")
    _report(problems, path.name, "that cannot be read as CSV (a field over 128 KB)", np.asarray(unreadable), "skipped")
    _report_unknown_labels(problems, path.name, {name: np.asarray(lines) for name, lines in unknown_labels.items()},
                           "kept as data")
    boxes = pd.DataFrame.from_records(records, columns=list(BOX_COLUMNS))
    return boxes.astype({"image": "str", "label": "str", "x": float, "y": float, "w": float, "h": float})


def _no_boxes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str" if c in ("image", "label") else float) for c in BOX_COLUMNS})


def _parse_box_row(row: list[str]) -> tuple[str, str, float, float, float, float] | None:
    """One BBox row, or None when it is malformed (fewer than 6 fields, extra non-empty fields, bad numbers)."""
    if len(row) < 6 or any(cell.strip() for cell in row[6:]):
        return None
    try:
        x, y, w, h = (float(cell) for cell in row[2:6])
    except ValueError:
        return None
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        return None
    return restore(row[0].strip()), canonical_label(restore(row[1].strip())), x, y, w, h


def _count_boxes(images: pd.Series, boxes: pd.DataFrame) -> np.ndarray:
    counts = boxes["image"].value_counts()
    return images.map(counts).fillna(0).astype(np.int64).to_numpy()


# ------------------------------------------------------------------------------------------- splits

def _read_name_list(path: Path, known: set[str], problems: list[str]) -> set[str]:
    """The image names of an official split list; unsafe names and names not in Data_Entry are reported."""
    if not path.is_file():
        return set()
    try:
        names = np.array([line.strip() for line in _read_text(path).splitlines()], dtype=object)
    except DatasetError as error:
        problems.append(f"{error}; list ignored")
        return set()
    given = names != ""
    unsafe = _unsafe_names(names) & given
    _report(problems, path.name, "with an image name that has a path separator or '..'",
            np.flatnonzero(unsafe) + 1, "ignored")
    unknown = given & ~unsafe & ~_listed(names, known)
    if unknown.any():
        problems.append(f"{path.name}: {int(unknown.sum())} image name(s) not in Data_Entry "
                        f"({_lines_text(np.flatnonzero(unknown) + 1)}, e.g. {quoted(names[unknown][0])}); ignored")
    return set(names[given & ~unsafe & ~unknown].tolist())


def _patient_rank(patient_ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded, platform-independent pseudo-random order key per patient (crc32; not Python's hash)."""
    return np.fromiter((zlib.crc32(f"{seed}:{int(p)}".encode()) for p in patient_ids), dtype=np.int64,
                       count=len(patient_ids))


def _cut_by_rank(rank: np.ndarray, fractions: tuple[float, ...], names: tuple[str, ...]) -> np.ndarray:
    """Give the patients (ordered by rank) to `names` in the given proportions of the patient count.

    Proportional cuts rather than per-patient thresholds keep val and test non-empty on small sets.
    """
    order = np.argsort(rank, kind="stable")
    result = np.empty(len(rank), dtype=object)
    bounds = np.round(np.cumsum(fractions) / sum(fractions) * len(rank)).astype(int)
    start = 0
    for name, end in zip(names, bounds):
        result[order[start:end]] = name
        start = end
    return result


def _assign_splits(root: Path, table: pd.DataFrame, seed: int, problems: list[str]) -> np.ndarray:
    """train/val/test per image, always whole patients.

    With the official lists: a patient with any image in test_list.txt is test (conflicts reported),
    the train_val patients are cut 7:1 into train/val, and patients in neither list are cut 70/10/20.
    Without them, all patients are cut 70/10/20 by a seeded order.
    """
    codes, patients = pd.factorize(table["patient_id"])
    patients = np.asarray(patients, dtype=np.int64)
    rank = _patient_rank(patients, seed)
    patient_split = np.empty(len(patients), dtype=object)
    test_path, train_val_path = (_optional_file(root, name, problems) for name in (TEST_LIST, TRAIN_VAL_LIST))
    if not (test_path.is_file() or train_val_path.is_file()):
        patient_split[:] = _cut_by_rank(rank, SPLIT_FRACTIONS, ("train", "val", "test"))
        return patient_split[codes]

    images = table["image"].to_numpy(dtype=object)
    known = set(images.tolist())
    in_test = _listed(images, _read_name_list(test_path, known, problems))
    in_train_val = _listed(images, _read_name_list(train_val_path, known, problems))
    test_patient = np.bincount(codes, weights=in_test, minlength=len(patients)) > 0
    train_val_patient = np.bincount(codes, weights=in_train_val, minlength=len(patients)) > 0
    conflict = test_patient & train_val_patient
    if conflict.any():
        moved = int((in_train_val & ~in_test & conflict[codes]).sum())
        problems.append(f"{TRAIN_VAL_LIST}: {moved} image(s) of {int(conflict.sum())} patient(s) who also "
                        f"have images in {TEST_LIST}; moved to test so no patient is in two splits")
    patient_split[test_patient] = "test"
    listed = ~test_patient & train_val_patient
    patient_split[listed] = _cut_by_rank(rank[listed], (7, 1), ("train", "val"))
    unlisted = ~test_patient & ~train_val_patient
    if unlisted.any():
        patient_split[unlisted] = _cut_by_rank(rank[unlisted], SPLIT_FRACTIONS, ("train", "val", "test"))
        problems.append(f"{root}: {int(unlisted[codes].sum())} image(s) of {int(unlisted.sum())} patient(s) "
                        f"are in neither {TEST_LIST} nor {TRAIN_VAL_LIST}; split by patient 70/10/20")
    return patient_split[codes]


def _listed(images: np.ndarray, names: set[str]) -> np.ndarray:
    return np.fromiter((image in names for image in images), dtype=bool, count=len(images))


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, int, np.integer)) else list(value)


def _in_upper(column: pd.Series, value: str | Iterable[str]) -> np.ndarray:
    return column.isin([str(v).upper() for v in _as_list(value)]).to_numpy(dtype=bool)


def _label_mask(labels: np.ndarray, selected: np.ndarray, match: str) -> np.ndarray:
    if match == "any":
        return labels[:, selected].any(axis=1)
    if match == "all":
        return labels[:, selected].all(axis=1)
    if match == "only":
        return labels[:, selected].any(axis=1) & ~labels[:, ~selected].any(axis=1)
    raise ValueError(f"match must be 'any', 'all' or 'only', not {match!r}")
