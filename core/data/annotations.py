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
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from core.atomic import atomic_write_text
from core.errors import UserError
from core.labels import LABEL_INDEX, NIH_LABELS, canonical_label

PROJECT_FOLDER = ".cxr-workbench"
BOXES_FILE = "annotations.csv"
LABELS_FILE = "finding_labels.csv"
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
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

    def validated(self, image: str) -> "Box":
        label = canonical_label(self.label)
        if label not in BOX_LABELS:
            raise AnnotationError(f"{image}: '{self.label}' is not a finding a box can carry")
        if not (self.w > 0 and self.h > 0):
            raise AnnotationError(f"{image}: a box needs a positive width and height (got {self.w} x {self.h})")
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
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
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


def open_store(index, user_data_dir: Path | None = None) -> "AnnotationStore":
    """The annotation store of an opened DatasetIndex: its boxes and labels overlaid with saved edits."""
    labels = dict(zip(index.table["image"], index.table["finding_labels"]))
    return AnnotationStore(index.root, index.boxes, labels, user_data_dir)


def apply_saved_edits(index, user_data_dir: Path | None = None) -> int:
    """Apply the user's saved annotation edits to `index`, creating nothing; returns the number of
    images whose Finding Labels were edited. Used by `prepare`, so training sees the corrected labels."""
    root = Path(index.root).resolve()
    for folder in (root / PROJECT_FOLDER, _fallback_folder(root, user_data_dir)):
        if (folder / BOXES_FILE).exists() or (folder / LABELS_FILE).exists():
            store = open_store(index, user_data_dir)
            store.apply_to(index)
            return len(store.edited_labels())
    return 0


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def bbox_list_text(boxes: Mapping[str, Iterable[Box]]) -> str:
    """BBox_List_2017 format: the real 9-field header, 6-field rows, Data_Entry label spelling."""
    out = io.StringIO()
    out.write(BBOX_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for image in sorted(boxes):
        for box in boxes[image]:
            writer.writerow([image, box.label, *(_format_number(v) for v in (box.x, box.y, box.w, box.h))])
    return out.getvalue()


def read_bbox_list(path: Path) -> dict[str, tuple[Box, ...]]:
    """Read a BBox_List file by position (its header has more fields than its rows)."""
    boxes: dict[str, list[Box]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: cannot read the annotation file ({error})") from error
    for line, row in enumerate(rows[1:], start=2):
        try:
            image, label = row[0], row[1]
            box = Box(label, *(float(v) for v in row[2:6])).validated(image)
        except (IndexError, ValueError, AnnotationError) as error:
            raise AnnotationError(f"{path}, line {line}: not a valid box row ({error})") from error
        boxes.setdefault(image, []).append(box)
    return {image: tuple(items) for image, items in boxes.items()}


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
        raise AnnotationError(f"{image}: unknown label(s) {', '.join(unknown)}")
    if not names:
        raise AnnotationError(f"{image}: an image needs at least one label (use 'No Finding')")
    if "No Finding" in names and len(names) > 1:
        raise AnnotationError(f"{image}: 'No Finding' cannot be combined with findings")
    return "|".join(name for name in NIH_LABELS if name in names)


class AnnotationStore:
    """Boxes and Finding Labels per image: the dataset's originals overlaid with the user's edits.

    Every edit method applies the edit in memory, then autosaves. It returns True when the save
    succeeded; on failure the store stays `dirty`, `last_error` holds the reason, and the next edit
    (or an explicit `save()`) tries again.
    """

    def __init__(self, dataset_root: Path, original_boxes: pd.DataFrame, original_labels: Mapping[str, str],
                 user_data_dir: Path | None = None):
        self.folder, self.location_note = annotation_folder(Path(dataset_root), user_data_dir)
        self._original_labels = dict(original_labels)
        self._boxes = boxes_from_frame(original_boxes)
        self._labels: dict[str, str] = {}
        self.dirty = False
        self.last_error: str = ""
        self._load()

    @property
    def boxes_path(self) -> Path:
        return self.folder / BOXES_FILE

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS_FILE

    def _load(self) -> None:
        if self.boxes_path.exists():
            self._boxes = read_bbox_list(self.boxes_path)
        if self.labels_path.exists():
            try:
                frame = pd.read_csv(self.labels_path, dtype=str, keep_default_na=False)
                self._labels = dict(zip(frame["Image Index"], frame["Finding Labels"]))
            except (OSError, ValueError, KeyError) as error:
                raise AnnotationError(f"{self.labels_path}: cannot read the edited labels ({error})") from error

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
            raise AnnotationError(f"{image}: not an image of this dataset")

    def set_boxes(self, image: str, boxes: Iterable[Box]) -> bool:
        """Replace an image's boxes (the undo stack restores whole lists, which keeps undo exact)."""
        self._check_image(image)
        checked = tuple(box.validated(image) for box in boxes)
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
        """Write both files atomically; raise AnnotationError (store stays dirty) if that fails."""
        labels = io.StringIO()
        writer = csv.writer(labels, lineterminator="\n")
        writer.writerow(["Image Index", "Finding Labels"])
        writer.writerows(sorted(self._labels.items()))
        try:
            atomic_write_text(self.boxes_path, bbox_list_text(self._boxes))
            atomic_write_text(self.labels_path, labels.getvalue())
        except OSError as error:
            self.dirty = True
            raise AnnotationError(f"{self.folder}: could not save annotations ({error.strerror or error})") from error
        self.dirty = False
        self.last_error = ""

    def export_bbox_list(self, path: Path) -> int:
        """Write all current boxes as a BBox_List CSV; returns the number of boxes."""
        try:
            atomic_write_text(Path(path), bbox_list_text(self._boxes))
        except OSError as error:
            raise AnnotationError(f"{path}: could not write ({error.strerror or error})") from error
        return sum(len(items) for items in self._boxes.values())

    def export_coco(self, path: Path, sizes: Mapping[str, tuple[int, int]]) -> int:
        """Write the current boxes as COCO detection JSON; `sizes` maps image -> (width, height)."""
        document = coco_document(self._boxes, sizes)
        try:
            atomic_write_text(Path(path), json.dumps(document, indent=1))
        except OSError as error:
            raise AnnotationError(f"{path}: could not write ({error.strerror or error})") from error
        return len(document["annotations"])


def coco_document(boxes: Mapping[str, Iterable[Box]], sizes: Mapping[str, tuple[int, int]]) -> dict:
    """COCO detection layout; category ids follow NIH_LABELS order (1-based), images with boxes only."""
    categories = [{"id": LABEL_INDEX[name] + 1, "name": name, "supercategory": "finding"} for name in BOX_LABELS]
    images, annotations = [], []
    for image_id, image in enumerate(sorted(name for name, items in boxes.items() if items), start=1):
        width, height = sizes.get(image, (0, 0))
        images.append({"id": image_id, "file_name": image, "width": int(width), "height": int(height)})
        for box in boxes[image]:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": LABEL_INDEX[box.label] + 1,
                "bbox": [box.x, box.y, box.w, box.h], "area": box.w * box.h, "iscrowd": 0,
            })
    return {"info": {"description": "cxr-workbench annotations"}, "images": images,
            "annotations": annotations, "categories": categories}
