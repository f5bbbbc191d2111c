"""The user's box and label edits, kept apart from the original NIH files and saved after every edit.

The dataset's own `BBox_List_2017.csv` and `Data_Entry` CSV are never written. The store keeps the
*current* box list of the whole dataset (the original boxes with the user's edits applied) and, after
each edit, writes it atomically to `<dataset>/.cxr-workbench/annotations.csv` in BBox_List format: a
full snapshot rather than a diff, because BBox_List rows cannot say "this image now has no boxes", and
the file is small (984 boxes in the real dataset). Edited `Finding Labels` go to `finding_labels.csv`
beside it (only the edited images). On the next start the snapshot replaces the original box list.

If the dataset folder is not writable (a read-only share), the files go to a per-dataset folder under
the user's data directory instead, and `AnnotationStore.location_note` says so.

A save that fails leaves the store dirty and keeps the error (labelme #2452: a failed autosave must
never mark the file clean).

Nothing locks the user out of their own annotations:
- a box label outside the NIH findings (`Lesion` in someone's BBox list) is kept as data: read, shown,
  saved, exported (COCO gives it a category after the 15 NIH ones); new boxes still need an NIH finding
  or one of the labels the data already uses (`check_box`);
- the tool only ever writes files it reads back (every label, any text); a file damaged by hand is
  refused at open with its line named (`AnnotationError`: the app then shows the boxes read-only), so it
  is never overwritten unseen;
- one writer per store folder: the store holds an OS lock (`core.locks`) on `.cxr-workbench/.lock` while
  it lives. A second window (another process) opens the same annotations read-only and says why; in one
  process the newest store takes the lock over and an older one turns read-only. Edits to a read-only
  store stay in memory and its saves fail with that reason, so the app shows "Not saved: ...".
Every CSV cell goes through `core.csvsafe`, so a label like `=HYPERLINK(...)` cannot run in a spreadsheet
and still reads back as written.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from core.atomic import atomic_temp_pattern, atomic_write_text, describe_os_error
from core.cleanup import remove_leftovers
from core.csvsafe import csv_text, quoted, restore
from core.errors import UserError
from core.labels import LABEL_INDEX, NIH_LABELS, canonical_label
from core.locks import FolderInUse, FolderLock, acquire

PROJECT_FOLDER = ".cxr-workbench"
BOXES_FILE = "annotations.csv"
LABELS_FILE = "finding_labels.csv"
LOCK_FILE = ".lock"
PROBE_PREFIX = ".probe-"
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
LABELS_HEADER = ("Image Index", "Finding Labels")
BOX_LABELS: tuple[str, ...] = tuple(name for name in NIH_LABELS if name != "No Finding")


class AnnotationError(UserError):
    """An edit or a save the store cannot carry out; the message names the file or image."""


@dataclass(frozen=True)
class Box:
    """One finding box in pixels of the original image (BBox_List convention: top-left, width, height)."""

    label: str
    x: float
    y: float
    w: float
    h: float

    def validated(self, image: str, also_allowed: Iterable[str] = ()) -> "Box":
        """The box with the canonical label; raises AnnotationError unless the label is an NIH finding
        (or in `also_allowed`: the labels the data already uses) and the width and height are positive."""
        label = canonical_label(self.label)
        if label not in BOX_LABELS and label not in also_allowed:
            raise AnnotationError(f"{quoted(image)}: {quoted(self.label)} is not a finding a box can carry")
        if not (self.w > 0 and self.h > 0):
            raise AnnotationError(f"{quoted(image)}: a box needs a positive width and height "
                                  f"(got {self.w} x {self.h})")
        return Box(label, float(self.x), float(self.y), float(self.w), float(self.h))


def default_user_data_dir() -> Path:
    """The per-user data folder (XDG on Linux, the platform's usual place elsewhere)."""
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home())) / "cxr-workbench"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "cxr-workbench"


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=PROBE_PREFIX):
            pass
    except OSError:
        return False
    return True


def annotation_folder(dataset_root: Path, user_data_dir: Path | None = None) -> tuple[Path, str]:
    """Where this dataset's annotation files live, and a note for the user when it is not the dataset folder."""
    dataset_root = Path(dataset_root).resolve()
    preferred = dataset_root / PROJECT_FOLDER
    if _writable_folder(preferred):
        return preferred, ""
    fallback = _fallback_folder(dataset_root, user_data_dir)
    return fallback, f"{dataset_root} is not writable: annotations are kept in {fallback}"


def _fallback_folder(dataset_root: Path, user_data_dir: Path | None) -> Path:
    digest = hashlib.sha1(str(dataset_root).encode("utf-8")).hexdigest()[:12]
    return Path(user_data_dir or default_user_data_dir()) / "annotations" / f"{dataset_root.name}-{digest}"


def _saved_folder(dataset_root: Path, user_data_dir: Path | None) -> Path | None:
    """The folder holding this dataset's saved edits, found without creating anything; None if none."""
    root = Path(dataset_root).resolve()
    for folder in (root / PROJECT_FOLDER, _fallback_folder(root, user_data_dir)):
        if (folder / BOXES_FILE).exists() or (folder / LABELS_FILE).exists():
            return folder
    return None


def open_store(index, user_data_dir: Path | None = None, for_reading: bool = False) -> "AnnotationStore":
    """The annotation store of an opened DatasetIndex: its boxes and labels overlaid with saved edits.
    `for_reading` opens it without creating a folder or taking the lock (it can then never save)."""
    labels = dict(zip(index.table["image"], index.table["finding_labels"]))
    return AnnotationStore(index.root, index.boxes, labels, user_data_dir, for_reading=for_reading)


def apply_saved_edits(index, user_data_dir: Path | None = None) -> int:
    """Apply the user's saved annotation edits to `index`, creating nothing and locking nothing (an app
    window may be editing them); returns the number of images whose Finding Labels were edited. Used by
    `prepare`, so training sees the corrected labels."""
    if _saved_folder(index.root, user_data_dir) is None:
        return 0
    store = open_store(index, user_data_dir, for_reading=True)
    store.apply_to(index)
    return len(store.edited_labels())


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def bbox_list_text(boxes: Mapping[str, Iterable[Box]]) -> str:
    """BBox_List_2017 format: the real 9-field header, 6-field rows, Data_Entry label spelling; text cells
    neutralised against spreadsheet formulas (`core.csvsafe`)."""
    rows = ([image, box.label, *(_format_number(v) for v in (box.x, box.y, box.w, box.h))]
            for image in sorted(boxes) for box in boxes[image])
    return csv_text(rows, header=BBOX_HEADER)


def _csv_records(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells restored from `core.csvsafe`) of every non-blank record after the header;
    an unreadable file or record is an AnnotationError naming the file (and the line)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read the annotation file ({describe_os_error(error)})") from error
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not a UTF-8 text file (byte {error.start})") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    try:
        for row in reader:
            if reader.line_num > 1 and any(cell.strip() for cell in row):
                records.append((reader.line_num, [restore(cell) for cell in row]))
    except csv.Error as error:
        raise AnnotationError(f"{path}, line {reader.line_num}: {error}") from error
    return records


def read_bbox_list(path: Path) -> dict[str, tuple[Box, ...]]:
    """Read a BBox_List file by position (its header has more fields than its rows). Any label is kept
    (unknown ones as data); a row that is not an image, a label and four numbers with w, h > 0 is an
    AnnotationError naming the file and line."""
    boxes: dict[str, list[Box]] = {}
    for line, row in _csv_records(path):
        try:
            image, label = row[0].strip(), canonical_label(row[1])
            x, y, w, h = (float(v) for v in row[2:6])
            valid = bool(image and label) and not any(cell.strip() for cell in row[6:]) \
                and bool(np.all(np.isfinite((x, y, w, h)))) and w > 0 and h > 0
        except (IndexError, ValueError):
            valid = False
        if not valid:
            raise AnnotationError(f"{path}, line {line}: not a valid box row (expected image, label and "
                                  f"x, y, w, h as numbers with w, h > 0)")
        boxes.setdefault(image, []).append(Box(label, x, y, w, h))
    return {image: tuple(items) for image, items in boxes.items()}


def read_edited_labels(path: Path) -> dict[str, str]:
    """The `finding_labels.csv` of a store: image -> Finding Labels cell, as saved."""
    labels: dict[str, str] = {}
    for line, row in _csv_records(path):
        if len(row) < 2 or not row[0].strip() or not row[1].strip() or any(cell.strip() for cell in row[2:]):
            raise AnnotationError(f"{path}, line {line}: not an 'image,labels' row")
        labels[row[0].strip()] = row[1].strip()
    return labels


def boxes_from_frame(frame: pd.DataFrame) -> dict[str, tuple[Box, ...]]:
    """Group a DatasetIndex.boxes frame (image, label, x, y, w, h) into boxes per image."""
    grouped: dict[str, list[Box]] = {}
    for image, label, x, y, w, h in frame[["image", "label", "x", "y", "w", "h"]].itertuples(index=False):
        grouped.setdefault(image, []).append(Box(canonical_label(label), float(x), float(y), float(w), float(h)))
    return {image: tuple(items) for image, items in grouped.items()}


def normalise_finding_labels(image: str, labels: Iterable[str]) -> str:
    """Check an edited label set and return it as a `Finding Labels` cell (NIH order, `|`-joined)."""
    names = {canonical_label(name) for name in labels if name.strip()}
    unknown = sorted(names - set(LABEL_INDEX))
    if unknown:
        raise AnnotationError(f"{quoted(image)}: unknown label(s) {', '.join(quoted(name) for name in unknown)}")
    if not names:
        raise AnnotationError(f"{quoted(image)}: an image needs at least one label (use 'No Finding')")
    if "No Finding" in names and len(names) > 1:
        raise AnnotationError(f"{quoted(image)}: 'No Finding' cannot be combined with findings")
    return "|".join(name for name in NIH_LABELS if name in names)


# ---- one writer per store folder -------------------------------------------------------------------

_owners: dict[Path, tuple[FolderLock, "weakref.ref[AnnotationStore]"]] = {}
_owners_guard = threading.RLock()


def _claim(folder: Path, store: "AnnotationStore") -> "weakref.ref | None":
    """Make `store` the writer of `folder`, or raise FolderInUse when another process holds it. In this
    process the lock passes to the newer store (the app opens the same dataset again); the previous
    owner is returned so `_unclaim` can give it back if the new store fails to open."""
    with _owners_guard:
        held = _owners.get(folder)
        if held is not None and held[0].held:
            lock, previous = held
        else:
            lock, previous = acquire(folder / LOCK_FILE, "its annotations are open in another window",
                                     shown=folder), None
        _owners[folder] = (lock, weakref.ref(store, functools.partial(_store_gone, folder)))
        return previous


def _unclaim(folder: Path, store: "AnnotationStore", previous: "weakref.ref | None") -> None:
    """Undo `_claim` for a store that failed to open: the previous owner gets the lock back."""
    with _owners_guard:
        held = _owners.get(folder)
        if held is None or held[1]() is not store:
            return
        del _owners[folder]
        if previous is not None and previous() is not None:
            _owners[folder] = (held[0], previous)
        else:
            held[0].release()


def _store_gone(folder: Path, ref: weakref.ref) -> None:
    with _owners_guard:
        held = _owners.get(folder)
        if held is not None and held[1] is ref:
            del _owners[folder]
            held[0].release()


def _owner(folder: Path) -> "AnnotationStore | None":
    with _owners_guard:
        held = _owners.get(folder)
        return held[1]() if held is not None else None


class AnnotationStore:
    """Boxes and Finding Labels per image: the dataset's originals overlaid with the user's edits.

    Every edit method applies the edit in memory, then autosaves. It returns True when the save
    succeeded; on failure the store stays `dirty`, `last_error` holds the reason, and the next edit
    (or an explicit `save()`) tries again. `read_only_reason` is set when another window holds these
    annotations (or the folder cannot be written); the store then keeps edits in memory only.
    """

    def __init__(self, dataset_root: Path, original_boxes: pd.DataFrame, original_labels: Mapping[str, str],
                 user_data_dir: Path | None = None, for_reading: bool = False):
        self._original_labels = dict(original_labels)
        self._boxes = boxes_from_frame(original_boxes)
        self._labels: dict[str, str] = {}
        self._written: dict[Path, str] = {}
        self.dirty = False
        self.last_error: str = ""
        self.read_only_reason = ""
        if for_reading:
            self.folder = _saved_folder(dataset_root, user_data_dir) or Path(dataset_root).resolve() / PROJECT_FOLDER
            self.location_note = ""
            self.read_only_reason = "opened for reading only"
            self._load()
        else:
            self.folder, self.location_note = annotation_folder(Path(dataset_root), user_data_dir)
            previous = self._take_lock()
            try:
                self._load()  # after the lock: no other writer can save between this read and our saves
            except BaseException:
                _unclaim(self.folder, self, previous)
                raise
        self.extra_labels = frozenset(box.label for items in self._boxes.values() for box in items) - set(BOX_LABELS)

    def _take_lock(self) -> "weakref.ref | None":
        previous = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)  # the per-user fallback may not exist yet
            previous = _claim(self.folder, self)
        except FolderInUse as error:
            who = f"process {error.pid}" if error.pid else "another process"
            self.read_only_reason = (f"{self.folder} is in use by {who} (another window has these annotations "
                                     f"open): edits here are not saved; close it and reopen the dataset to edit")
        except OSError as error:
            self.read_only_reason = f"{self.folder}: cannot write the annotations ({describe_os_error(error)})"
        else:  # the only writer: what killed writers left behind is ours to remove
            try:
                remove_leftovers(self.folder, (atomic_temp_pattern(BOXES_FILE), atomic_temp_pattern(LABELS_FILE),
                                               PROBE_PREFIX + "*"))
            except OSError:
                pass  # a leftover that cannot be removed harms nothing
        if self.read_only_reason:
            self.location_note = "; ".join(filter(None, (self.location_note, self.read_only_reason)))
        return previous

    @property
    def read_only(self) -> bool:
        return _owner(self.folder) is not self

    def close(self) -> None:
        """Give up writing (the lock is freed for another window). Unsaved edits stay unsaved."""
        with _owners_guard:
            held = _owners.get(self.folder)
            if held is not None and held[1]() is self:
                del _owners[self.folder]
                held[0].release()
        if not self.read_only_reason:
            self.read_only_reason = "this store was closed"

    @property
    def boxes_path(self) -> Path:
        return self.folder / BOXES_FILE

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS_FILE

    def _load(self) -> None:
        """Read the saved files; a damaged one raises AnnotationError naming it (and is never overwritten)."""
        if self.boxes_path.exists():
            self._boxes = read_bbox_list(self.boxes_path)
        if self.labels_path.exists():
            self._labels = read_edited_labels(self.labels_path)

    # ---- reading
    def boxes(self, image: str) -> tuple[Box, ...]:
        return self._boxes.get(image, ())

    def all_boxes(self) -> dict[str, tuple[Box, ...]]:
        return dict(self._boxes)

    def boxes_frame(self) -> pd.DataFrame:
        """The current boxes as a DatasetIndex.boxes frame (image, label, x, y, w, h)."""
        rows = [(image, b.label, b.x, b.y, b.w, b.h) for image, items in self._boxes.items() for b in items]
        return pd.DataFrame(rows, columns=["image", "label", "x", "y", "w", "h"])

    def finding_labels(self, image: str) -> str:
        return self._labels.get(image, self._original_labels.get(image, ""))

    def edited_labels(self) -> dict[str, str]:
        return dict(self._labels)

    def apply_to(self, index, images: Iterable[str] | None = None) -> None:
        """Show the edits in a DatasetIndex: its boxes and n_boxes, and the Finding Labels (text and
        multi-hot) of the edited images, or of `images` only after a single edit."""
        index.replace_boxes(self.boxes_frame())
        table = index.table
        names = set(self._labels) if images is None else set(images)
        rows = np.flatnonzero(table["image"].isin(names).to_numpy())
        for row in rows:
            cell = self.finding_labels(table["image"].iat[row])
            table.iloc[row, table.columns.get_loc("finding_labels")] = cell
            index.labels[row] = False
            index.labels[row, [LABEL_INDEX[name] for name in cell.split("|") if name in LABEL_INDEX]] = True

    # ---- editing
    def _check_image(self, image: str) -> None:
        if self._original_labels and image not in self._original_labels:
            raise AnnotationError(f"{quoted(image)}: not an image of this dataset")

    def check_box(self, image: str, box: Box) -> Box:
        """The box as the store would keep it, or AnnotationError: an NIH finding or a label the data
        already uses (so a box with an unknown label can still be moved, deleted and undone)."""
        return box.validated(image, self.extra_labels)

    def set_boxes(self, image: str, boxes: Iterable[Box]) -> bool:
        """Replace an image's boxes (the undo stack restores whole lists, which keeps undo exact)."""
        self._check_image(image)
        checked = tuple(self.check_box(image, box) for box in boxes)
        if checked:
            self._boxes[image] = checked
        else:
            self._boxes.pop(image, None)
        return self._autosave()

    def add_box(self, image: str, box: Box) -> bool:
        return self.set_boxes(image, (*self.boxes(image), box))

    def replace_box(self, image: str, index: int, box: Box) -> bool:
        """Move, resize or relabel the box at `index`."""
        items = list(self.boxes(image))
        items[index] = box
        return self.set_boxes(image, items)

    def delete_box(self, image: str, index: int) -> bool:
        items = list(self.boxes(image))
        del items[index]
        return self.set_boxes(image, items)

    def set_finding_labels(self, image: str, labels: Iterable[str]) -> bool:
        self._check_image(image)
        cell = normalise_finding_labels(image, labels)
        if cell == self._original_labels.get(image):
            self._labels.pop(image, None)
        else:
            self._labels[image] = cell
        return self._autosave()

    # ---- saving and export
    def _autosave(self) -> bool:
        self.dirty = True
        try:
            self.save()
        except AnnotationError as error:
            self.last_error = str(error)
            return False
        return True

    def save(self) -> None:
        """Write both files atomically (each only when its text changed); raise AnnotationError (the
        store stays dirty) if that fails or if this store is read-only."""
        if self.read_only:
            self.dirty = True
            raise AnnotationError(f"{self.folder}: not saved: "
                                  f"{self.read_only_reason or 'the annotations were reopened in this window'}")
        texts = {self.boxes_path: bbox_list_text(self._boxes),
                 self.labels_path: csv_text(sorted(self._labels.items()), header=",".join(LABELS_HEADER))}
        try:
            for path, text in texts.items():
                if self._written.get(path) != text or not path.exists():
                    atomic_write_text(path, text)
                    self._written[path] = text
        except OSError as error:
            self.dirty = True
            raise AnnotationError(f"{self.folder}: could not save annotations ({describe_os_error(error)})") from error
        self.dirty = False
        self.last_error = ""

    def export_bbox_list(self, path: Path) -> int:
        """Write all current boxes as a BBox_List CSV; returns the number of boxes."""
        try:
            atomic_write_text(Path(path), bbox_list_text(self._boxes))
        except OSError as error:
            raise AnnotationError(f"{path}: could not write ({describe_os_error(error)})") from error
        return sum(len(items) for items in self._boxes.values())

    def export_coco(self, path: Path, sizes: Mapping[str, tuple[int, int]]) -> int:
        """Write the current boxes as COCO detection JSON; `sizes` maps image -> (width, height)."""
        document = coco_document(self._boxes, sizes)
        try:
            atomic_write_text(Path(path), json.dumps(document, indent=1))
        except OSError as error:
            raise AnnotationError(f"{path}: could not write ({describe_os_error(error)})") from error
        return len(document["annotations"])


def coco_document(boxes: Mapping[str, Iterable[Box]], sizes: Mapping[str, tuple[int, int]]) -> dict:
    """COCO detection layout; category ids follow NIH_LABELS order (1-based), images with boxes only.
    Labels outside the NIH findings get the ids after the 15, in name order."""
    used = {box.label for items in boxes.values() for box in items}
    ids = {name: LABEL_INDEX[name] + 1 for name in BOX_LABELS}
    ids.update((name, len(NIH_LABELS) + 1 + i) for i, name in enumerate(sorted(used - set(ids))))
    categories = [{"id": ids[name], "name": name, "supercategory": "finding"}
                  for name in sorted(ids, key=ids.__getitem__)]
    images, annotations = [], []
    for image_id, image in enumerate(sorted(name for name, items in boxes.items() if items), start=1):
        width, height = sizes.get(image, (0, 0))
        images.append({"id": image_id, "file_name": image, "width": int(width), "height": int(height)})
        for box in boxes[image]:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": ids[box.label],
                "bbox": [box.x, box.y, box.w, box.h], "area": box.w * box.h, "iscrowd": 0,
            })
    return {"info": {"description": "cxr-workbench annotations"}, "images": images,
            "annotations": annotations, "categories": categories}
