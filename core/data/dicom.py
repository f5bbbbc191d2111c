"""Import a folder tree of DICOM files as a dataset in NIH layout: `import_dicom(config, job) -> ImportResult`.

OUT after an import reads like any NIH folder (`core/data/dataset.open_dataset`):
    Data_Entry_2017.csv          one row per image, 2017-release style (CRLF, trailing comma, `058Y` ages)
    BBox_List_2017.csv           the header only: DICOM studies come without boxes
    images_001/images/PPPPPPPP_FFF.png, ...   5,000 per folder, 8-bit grey, square
    .dicom-import/mapping.json   PRIVATE (mode 0600, folder 0700; never share it with the dataset): a random
                                 salt; the salted hash (HMAC-SHA256) of each patient and the integer id it
                                 was given; the salted hashes of each imported SOPInstanceUID and source path
                                 with the size, time stamp and Data_Entry row of its image

Nothing identifying is written: no name, birth date, accession number, original Patient ID, date, UID or
source path appears in OUT, not even in the private file (which holds only salted hashes). Files that were
skipped and images left without labels are listed by source path in the result (terminal or dialog) only.

Pixels (through pydicom and its decoder plugins): the modality LUT or rescale slope/intercept, then the VOI
LUT or the window centre/width, so 12- and 16-bit data map to 8 bits by the window the modality chose (an
image without a usable window is scaled by its own min..max); MONOCHROME1 is inverted; the image is resized
to fit `size` x `size` keeping its aspect ratio and padded with black (centred), which the result counts.

Rows: Patient ID -> a new integer id through the salted hash (ids of new patients are given in hash order,
so they do not reveal the order of the source); Follow-up # orders each patient's images by study date and
time, series and instance number; age from PatientAge or birth and study dates; sex; View Position from
ViewPosition or the view code, series description or protocol name; original size and pixel spacing.
Finding Labels come from the `labels` CSV only ("No Finding" only when it says so); images without a row
there are kept with empty labels and listed.

A second run on the same source adds only new files (unchanged paths are not even opened; a file whose
SOPInstanceUID was imported before is skipped wherever it now lies). New images of a known patient are
numbered after that patient's earlier follow-ups, so existing image names never change (annotations refer
to them). With a labels CSV, earlier images it names take its labels too.

Every run converts into a private staging folder and moves finished PNGs in place only at the end; a stop
commits the images converted so far (raising `Cancelled` with the result) and a re-run continues.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import posixpath
import re
import secrets
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_write_text
from core.csvsafe import csv_text
from core.data import dicom_tags as tags
from core.data.phantoms import BBOX_HEADER, DATA_ENTRY_HEADER, DATA_ENTRY_NAME, MAX_IMAGES_PER_FOLDER
from core.errors import UserError
from core.jobs import Cancelled, Job
from core.labels import LABEL_INDEX, NIH_LABELS, split_labels
from core.options import option

PRIVATE_FOLDER = ".dicom-import"
MAPPING_NAME = "mapping.json"
MAPPING_VERSION = 1
BBOX_NAME = "BBox_List_2017.csv"
DEFER_SIZE = "256 KB"   # larger elements (pixel data) are read only when used: a skipped file costs its header
SHOWN_LINES = 3

# Why a file was not imported (the first part of each reason; the result counts them).
NOT_DICOM = "not DICOM"
DICOMDIR = "DICOMDIR"
NOT_IMAGE = "not an image"
NO_PIXELS = "no pixel data"
MULTI_FRAME = "multi-frame"
COLOUR = "colour"
COMPRESSION = "unsupported compression"
CORRUPT = "corrupt or truncated"
LINK_OUTSIDE = "link outside the source"
DUPLICATE = "duplicate"
UNREADABLE = "unreadable"
ALREADY = "already imported"   # not a problem: counted apart from the skipped files

_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


class OutNotEmpty(UserError):
    """OUT holds other files and no earlier import; the front end may offer `force`."""


@dataclass(frozen=True)
class ImportDicomConfig:
    """What to import. The CLI, the app's dialog and the tests all build this."""

    source: str = option("", "Folder of DICOM files, searched with its subfolders.", label="DICOM folder")
    out: str = option("", "Dataset folder to write in NIH layout: new, empty, or an earlier import "
                          "(then only new files are added).", label="Dataset folder")
    labels: str = option("", "CSV of SOPInstanceUID or file path (relative to the DICOM folder), then "
                             "|-separated Finding Labels. Images it does not name get no labels.",
                         label="Labels CSV")
    size: int = option(1024, "Side of the square PNGs in pixels; images keep their aspect ratio and are "
                             "padded with black.")
    force: bool = option(False, "Write into a folder that holds other files (files of the same name are "
                                "replaced).", label="Write into a non-empty folder")
    workers: int = option(0, "Decoding threads (0 = one per core).")

    def checked(self) -> "ImportDicomConfig":
        """The same config with absolute paths; raises UserError naming the bad option."""
        if not self.source or not Path(self.source).is_dir():
            raise UserError(f"import-dicom: the DICOM folder {self.source or '(not given)'} is not a folder")
        if not self.out:
            raise UserError("import-dicom: give the dataset folder to write (OUT)")
        source, out = Path(self.source).resolve(), Path(self.out).resolve()
        if source == out:
            raise UserError(f"import-dicom: {out} is the DICOM folder itself; choose another dataset folder")
        if not 64 <= self.size <= 4096:
            raise UserError(f"--size: {self.size} is outside 64..4096")
        if self.workers < 0:
            raise UserError(f"--workers: {self.workers} is negative")
        labels = ""
        if self.labels:
            if not Path(self.labels).is_file():
                raise UserError(f"--labels: {self.labels} is not a file")
            labels = str(Path(self.labels).resolve())
        return ImportDicomConfig(str(source), str(out), labels, self.size, self.force, self.workers)


@dataclass
class ImportResult:
    out: Path
    added: int = 0                      # images new in this run
    already: int = 0                    # files imported by an earlier run (not opened again if unchanged)
    total: int = 0                      # images in the dataset after this run
    new_patients: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)   # (source path, kind, detail)
    unlabelled: list[str] = field(default_factory=list)                 # source paths of new unlabelled images
    unlabelled_total: int = 0           # rows of the dataset without Finding Labels
    relabelled: int = 0                 # earlier images whose labels the CSV changed
    unmatched_labels: int = 0           # rows of the labels CSV that named no image
    padded: int = 0                     # new images that were not square (fitted and padded with black)
    unwindowed: int = 0                 # new images without a usable window (scaled by their own range)
    seconds: float = 0.0

    def skipped_counts(self) -> dict[str, int]:
        return dict(Counter(kind for _, kind, _ in self.skipped).most_common())

    def summary_lines(self) -> list[str]:
        """What the run did, in a few lines (the skipped files themselves are in `skipped`)."""
        lines = [f"Added {self.added} image(s) to {self.out}; it now holds {self.total}."
                 + (f" {self.already} file(s) were imported before." if self.already else "")]
        notes = [(self.new_patients, "new patient(s)"),
                 (self.padded, "image(s) were not square: fitted and padded with black"),
                 (self.unwindowed, "image(s) had no usable window: scaled by their own range"),
                 (self.relabelled, "earlier image(s) took new labels from the labels CSV"),
                 (self.unmatched_labels, "row(s) of the labels CSV named no image"),
                 (self.unlabelled_total, "image(s) have no Finding Labels (no row in the labels CSV)")]
        lines += [f"  {count} {text}" for count, text in notes if count]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file(s): "
                         + ", ".join(f"{kind} {count}" for kind, count in self.skipped_counts().items()))
        return lines

    def to_json(self) -> dict:
        return {"out": str(self.out), "added": self.added, "already_imported": self.already,
                "total": self.total, "new_patients": self.new_patients,
                "skipped": [{"file": name, "kind": kind, "reason": detail} for name, kind, detail in self.skipped],
                "skipped_counts": self.skipped_counts(), "unlabelled": self.unlabelled,
                "unlabelled_total": self.unlabelled_total, "relabelled": self.relabelled,
                "unmatched_labels": self.unmatched_labels, "padded": self.padded,
                "unwindowed": self.unwindowed, "seconds": round(self.seconds, 3)}


def import_dicom(config: ImportDicomConfig, job: Job | None = None) -> ImportResult:
    """Convert the DICOM images under `config.source` into (or onto) the NIH dataset `config.out`."""
    start = time.monotonic()
    job = job or Job()
    config = config.checked()
    source, out = Path(config.source), Path(config.out)
    labels = read_labels(Path(config.labels), source) if config.labels else {}
    created = not out.exists()
    mapping = open_mapping(out, config.force)
    staging = out / PRIVATE_FOLDER / "staging"
    try:
        try:
            shutil.rmtree(staging, ignore_errors=True)   # a crashed run's leftovers
            staging.mkdir(parents=True)
            os.chmod(out / PRIVATE_FOLDER, 0o700)
        except OSError as error:
            raise UserError(f"{out}: cannot write there ({error.strerror})") from error
        files, skipped = list_files(source, out, job)
        converter = _Converter(source, staging, mapping, config.size)
        outcomes, stopped = _convert_all(files, converter, config.workers or os.cpu_count() or 1, job)
        if not mapping.earlier and not any(isinstance(o, _Converted) for o in outcomes):
            if stopped:
                raise Cancelled("stopped on request before any image was converted; nothing was written")
            kinds = Counter(kind for _, kind, _ in skipped) + Counter(o.kind for o in outcomes)
            found = "; ".join(f"{kind}: {n}" for kind, n in kinds.most_common()) or "no files"
            raise UserError(f"{source}: no DICOM image could be imported ({found})")
        result = _commit(out, mapping, outcomes, skipped, labels, job)
    except BaseException:
        if not mapping.earlier and not mapping.saved:
            _remove_new_output(out, created)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.seconds = time.monotonic() - start
    if stopped:
        raise Cancelled(f"stopped on request; the {result.added} image(s) converted before the stop were added",
                        result=result)
    return result


# ------------------------------------------------------------------------------------------ labels

def read_labels(path: Path, source: Path) -> dict[str, str]:
    """The labels CSV as {key: "A|B"}: each key a SOPInstanceUID or a '/'-separated path relative to `source`.

    Two columns (more are ignored); a first row whose label cell is not made of known labels is a header.
    An empty label cell gives no labels. Unknown labels, "No Finding" beside a finding, a path outside the
    source and a key given twice with different labels are refused, naming the lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UserError(f"--labels: cannot read {path} ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise UserError(f"--labels: {path} is not UTF-8 text (byte {error.start})") from error
    labels: dict[str, str] = {}
    bad: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    first = True
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line, was_first, first = reader.line_num, first, False
            if len(row) < 2:
                bad.append(f"line {line}: expected SOPInstanceUID or file path, then Finding Labels")
                continue
            names = split_labels(row[1])
            unknown = [name for name in names if name not in LABEL_INDEX]
            if unknown and was_first:
                continue   # the header
            key = _label_key(row[0], source)
            if unknown:
                bad.append(f"line {line}: unknown label '{unknown[0]}'")
            elif "No Finding" in names and len(names) > 1:
                bad.append(f"line {line}: 'No Finding' beside a finding")
            elif key is None:
                bad.append(f"line {line}: {row[0].strip() or '(empty key)'} is not inside the DICOM folder")
            elif names:
                value = "|".join(sorted(set(names), key=LABEL_INDEX.get))
                if labels.setdefault(key, value) != value:
                    bad.append(f"line {line}: {row[0].strip()} was given other labels before")
    except csv.Error as error:
        raise UserError(f"--labels: {path}: line {reader.line_num}: {error}") from error
    if bad:
        more = f"; ... ({len(bad)} bad lines)" if len(bad) > SHOWN_LINES else ""
        known = f". Known labels: {', '.join(NIH_LABELS)}" if any("unknown label" in b for b in bad) else ""
        raise UserError(f"--labels: {path}: {'; '.join(bad[:SHOWN_LINES])}{more}{known}")
    return labels


def _label_key(cell: str, source: Path) -> str | None:
    """A UID as it is; a path made relative to `source` and '/'-separated; None for a path outside it."""
    key = cell.strip()
    if _UID.match(key):
        return key
    if os.path.isabs(key):
        key = os.path.relpath(os.path.realpath(key), os.path.realpath(source))
    key = posixpath.normpath(key.replace("\\", "/"))
    return None if not key or key == "." or key.startswith("../") or key == ".." else key


# ----------------------------------------------------------------------------------------- mapping

class _Mapping:
    """OUT's private mapping file: the salt and what earlier imports gave out (hashes only)."""

    def __init__(self, path: Path, data: dict | None):
        self.path = path
        self.earlier = data is not None
        data = data or {"version": MAPPING_VERSION, "salt": secrets.token_hex(32), "next_patient": 1,
                        "patients": {}, "images": {}}
        self.salt = bytes.fromhex(data["salt"])
        self.next_patient = int(data["next_patient"])
        self.patients: dict[str, dict] = data["patients"]   # patient hash -> {"id", "images"}
        self.images: dict[str, dict] = data["images"]       # uid hash -> {"path", "size", "mtime_ns", "row"}
        self._unchanged = {record["path"]: (record["size"], record["mtime_ns"]) for record in self.images.values()}
        self.saved = False

    def hash(self, kind: str, value: str) -> str:
        return hmac.new(self.salt, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()

    def unchanged(self, path_hash: str, stat: os.stat_result) -> bool:
        """The file at this path was imported before and has not changed since."""
        return self._unchanged.get(path_hash) == (stat.st_size, stat.st_mtime_ns)

    def save(self) -> None:
        data = {"version": MAPPING_VERSION, "salt": self.salt.hex(), "next_patient": self.next_patient,
                "patients": self.patients, "images": self.images}
        atomic_write_text(self.path, json.dumps(data, separators=(",", ":")), mode=0o600)  # private
        self.saved = True


def check_out_folder(out: str | Path, force: bool = False) -> bool:
    """True when `out` holds an earlier import, False when it is new or empty (or `force` is given).
    Raises `OutNotEmpty` for a folder holding other files, UserError for a file in the way."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if (out / PRIVATE_FOLDER / MAPPING_NAME).is_file():
        return True
    if out.exists() and any(out.iterdir()) and not force:
        raise OutNotEmpty(f"{out}: the folder is not empty and holds no earlier DICOM import; "
                          f"choose an empty folder or pass --force to write into it")
    return False


def open_mapping(out: Path, force: bool) -> _Mapping:
    """OUT's mapping: read from an earlier import, or new for a new or empty folder (or any with `force`).
    Raises like `check_out_folder`, and UserError for an unreadable mapping."""
    path = out / PRIVATE_FOLDER / MAPPING_NAME
    if check_out_folder(out, force):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != MAPPING_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {MAPPING_VERSION}")
            mapping = _Mapping(path, data)
            if not all(isinstance(record["row"]["image"], str) for record in mapping.images.values()):
                raise ValueError("an image record lacks its name")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path}: the earlier import's mapping cannot be read ({error}); "
                            f"import into a new folder") from error
        return mapping
    return _Mapping(path, None)


def _remove_new_output(out: Path, created: bool) -> None:
    """Undo a run that imported nothing into a folder no earlier import used."""
    shutil.rmtree(out / PRIVATE_FOLDER, ignore_errors=True)
    if created:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------- files

def list_files(source: Path, out: Path, job: Job) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Every regular file under `source` (sorted), and the entries that are not followed: links that
    lead outside `source`, unreadable folders, devices and pipes. Links that stay inside are not followed
    either (what they point to is listed in its own place); OUT is left out when it lies inside."""
    root = os.path.realpath(source)
    out_real = os.path.realpath(out)
    files: list[str] = []
    skipped: list[tuple[str, str, str]] = []
    stack, listed = [root], 0
    while stack:
        folder = stack.pop()
        job.check()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            skipped.append((_relative(folder, root), UNREADABLE, f"cannot list the folder ({error.strerror})"))
            continue
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if target != root and not target.startswith(root + os.sep):
                    skipped.append((_relative(entry.path, root), LINK_OUTSIDE,
                                    "a link to outside the DICOM folder; not followed"))
                # a link to a file or folder inside the source: that is imported from its own place
            elif entry.is_dir(follow_symlinks=False):
                if entry.path != out_real:
                    stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.path)
            else:
                skipped.append((_relative(entry.path, root), UNREADABLE, "not a regular file"))
        listed += 1
        job.report(listed, listed + len(stack), f"{len(files)} files", stage="listing")
    files.sort()
    return files, skipped


def _relative(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# -------------------------------------------------------------------------------------- converting

@dataclass(frozen=True)
class _Skipped:
    file: str
    kind: str
    detail: str


@dataclass(frozen=True)
class _Converted:
    """One image converted into the staging folder, with what its Data_Entry row needs (nothing identifying
    but `uid` and `file`, which stay in memory to look up its labels and to report it)."""

    file: str
    uid: str
    uid_hash: str
    path_hash: str
    size: int
    mtime_ns: int
    patient: str          # salted hash
    order: tuple          # study moment, series and instance number: the follow-up order
    age: int | None
    sex: str
    view: str
    width: int
    height: int
    spacing: tuple[float, float] | None
    staged: Path
    padded: bool
    windowed: bool


class _Converter:
    """Turns one source file into a staged PNG (`_Converted`) or says why not (`_Skipped`). Thread-safe:
    it only reads the mapping."""

    def __init__(self, source: Path, staging: Path, mapping: _Mapping, size: int):
        self.root = os.path.realpath(source)
        self.staging = staging
        self.mapping = mapping
        self.size = size

    def __call__(self, path: str) -> _Converted | _Skipped:
        file = _relative(path, self.root)
        try:
            stat = os.stat(path)
        except OSError as error:
            return _Skipped(file, UNREADABLE, f"cannot read ({error.strerror})")
        path_hash = self.mapping.hash("path", file)
        if self.mapping.unchanged(path_hash, stat):
            return _Skipped(file, ALREADY, "")
        if stat.st_size == 0:
            return _Skipped(file, NOT_DICOM, "an empty file")
        ds = _read_dataset(path)
        if isinstance(ds, tuple):
            return _Skipped(file, *ds)
        why = _not_importable(ds)
        if why:
            return _Skipped(file, *why)
        uid = tags.text(ds, "SOPInstanceUID")
        uid_hash = self.mapping.hash("uid", uid) if uid else path_hash
        if uid_hash in self.mapping.images:
            return _Skipped(file, ALREADY, "")
        try:
            stored = ds.pixel_array
        except Exception as error:  # noqa: BLE001 - pydicom and its plugins raise many kinds for bad data
            return _Skipped(file, CORRUPT, f"the pixel data cannot be decoded ({_first_line(error)})")
        if stored.ndim != 2:
            return _Skipped(file, MULTI_FRAME, f"pixel data of shape {stored.shape}")
        fraction, windowed = display_fraction(ds, stored)
        image, padded = fit_square(fraction, self.size)
        staged = self.staging / f"{path_hash[:40]}.png"
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise UserError(f"{staged}: the PNG encoder failed")
        try:
            staged.write_bytes(encoded.tobytes())
        except OSError as error:
            raise UserError(f"{self.staging}: cannot write ({error.strerror})") from error
        patient = tags.patient_key(ds) or f"file:{file}"
        order = (tags.study_moment(ds) or "~", _number(ds, "SeriesNumber"), _number(ds, "InstanceNumber"), file)
        return _Converted(file, uid, uid_hash, path_hash, stat.st_size, stat.st_mtime_ns,
                          self.mapping.hash("patient", patient), order, tags.age_years(ds), tags.sex(ds),
                          tags.view_position(ds), int(ds.Columns), int(ds.Rows), tags.pixel_spacing(ds),
                          staged, padded, windowed)


def _read_dataset(path: str):
    """The parsed dataset (pixel data deferred), or (kind, detail) saying why it is not one."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
        # a file without the 128-byte preamble and "DICM" (older exports) starts with a group 0002/0008 tag
        force = head[128:132] != b"DICM" and head[:2] in (b"\x02\x00", b"\x08\x00")
        ds = pydicom.dcmread(path, defer_size=DEFER_SIZE, force=force)
        if "TransferSyntaxUID" not in ds.file_meta:   # no file meta: say which encoding pydicom parsed
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        return ds
    except InvalidDicomError:
        return NOT_DICOM, "not a DICOM file"
    except OSError as error:
        return UNREADABLE, f"cannot read ({error.strerror})"
    except Exception as error:  # noqa: BLE001 - a damaged header makes pydicom raise many kinds
        return CORRUPT, f"the DICOM header cannot be read ({_first_line(error)})"


def _not_importable(ds) -> tuple[str, str] | None:
    """(kind, detail) for a dataset that is no single-frame greyscale image this project can decode."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import MediaStorageDirectoryStorage, UID

    media_class = ds.file_meta.get("MediaStorageSOPClassUID")
    if media_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        return DICOMDIR, "a DICOMDIR (an index of other files), not an image"
    sop_class = UID(tags.text(ds, "SOPClassUID") or str(media_class or ""))
    if not sop_class:
        return CORRUPT, "no SOP Class UID: a damaged file or not a DICOM object"
    if "PixelData" not in ds:
        if "Image Storage" in sop_class.name:
            return NO_PIXELS, f"{sop_class.name} without pixel data (the file may be truncated)"
        return NOT_IMAGE, sop_class.name
    frames = _number(ds, "NumberOfFrames")
    if frames > 1:
        return MULTI_FRAME, f"{frames} frames (only single images are imported)"
    photometric = tags.text(ds, "PhotometricInterpretation").upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return COLOUR, f"a {photometric or 'colour'} image, not a greyscale radiograph"
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            return COMPRESSION, f"{syntax.name}: pydicom has no decoder for this transfer syntax"
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "no plugin is available"
            return COMPRESSION, f"{syntax.name}: no decoder for it is installed ({needs})"
    return None


def _number(ds, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def display_fraction(ds, stored: np.ndarray) -> tuple[np.ndarray, bool]:
    """The image as displayed, float in [0, 1] with 0 black, and whether a VOI LUT or window set it.

    Modality LUT or rescale first, then the VOI LUT or the (first) window; pydicom maps a window onto a
    range that depends on the bit depth and the rescale, so the ends of that range are found by windowing
    -inf and +inf. Without a usable VOI the image's own min..max spans 0..1. MONOCHROME1 is inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(stored, ds)
    fraction = None
    lut = ds.get("VOILUTSequence")
    try:
        if lut and "LUTDescriptor" in lut[0] and "LUTData" in lut[0]:
            entries, first = (int(lut[0].LUTDescriptor[0]) or 65536), int(lut[0].LUTDescriptor[1])
            table = apply_voi(np.arange(first, first + entries), ds)
            low, high = float(table.min()), float(table.max())
            out = apply_voi(np.rint(values).astype(np.int64), ds)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
            out = apply_windowing(values, ds)
        else:
            out, low, high = None, 0.0, 0.0
        if out is not None and high != low:
            fraction = (out.astype(np.float64) - low) / (high - low)
    except (ValueError, TypeError, IndexError, NotImplementedError, AttributeError):
        fraction = None   # an unusable window or LUT (e.g. a width < 1): fall back to the image's range
    windowed = fraction is not None
    if fraction is None:
        low, high = float(values.min()), float(values.max())
        fraction = (values - low) / (high - low) if high > low else np.zeros(values.shape)
    if tags.text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1":
        fraction = 1.0 - fraction
    return np.clip(fraction, 0.0, 1.0), windowed


def fit_square(fraction: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """uint8 (size, size): the image resized to fit, keeping its aspect ratio, centred on black; and whether
    it needed padding (it was not square)."""
    height, width = fraction.shape
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(fraction.astype(np.float32), (new_w, new_h), interpolation=method)
    canvas = np.zeros((size, size), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = np.clip(np.rint(resized * 255), 0, 255).astype(np.uint8)
    return canvas, (new_h, new_w) != (size, size)


def _convert_all(files: list[str], convert: _Converter, workers: int, job: Job) -> tuple[list, bool]:
    """Convert the files on `workers` threads; returns the outcomes and whether a stop ended the run early
    (then only the files finished before it are in the outcomes)."""
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = [pool.submit(convert, path) for path in files]
    stopped, added, skipped = False, 0, 0
    try:
        for done, future in enumerate(as_completed(futures), 1):
            outcome = future.result()
            added += isinstance(outcome, _Converted)
            skipped += isinstance(outcome, _Skipped) and outcome.kind != ALREADY
            job.report(done, len(files), f"{added} images, {skipped} skipped", stage="converting")
            job.check()
    except Cancelled:
        stopped = True
    finally:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
    return [f.result() for f in futures if f.done() and not f.cancelled()], stopped


# -------------------------------------------------------------------------------------- committing

def _commit(out: Path, mapping: _Mapping, outcomes: list, skipped: list[tuple[str, str, str]],
            labels: dict[str, str], job: Job) -> ImportResult:
    """Name the converted images, move them in place, then write the mapping and the CSVs."""
    result = ImportResult(out)
    result.skipped = list(skipped)
    converted: dict[str, _Converted] = {}
    for outcome in sorted(outcomes, key=lambda o: o.file):
        if isinstance(outcome, _Skipped):
            if outcome.kind == ALREADY:
                result.already += 1
            else:
                result.skipped.append((outcome.file, outcome.kind, outcome.detail))
        elif outcome.uid_hash in converted:
            outcome.staged.unlink(missing_ok=True)
            result.skipped.append((outcome.file, DUPLICATE,
                                   f"the same SOPInstanceUID as {converted[outcome.uid_hash].file}"))
        else:
            converted[outcome.uid_hash] = outcome
    result.skipped.sort()

    keys = {mapping.hash(kind, key): key for key in labels for kind in ("uid", "path")}
    matched: set[str] = set()

    def labels_of(uid_hash: str, path_hash: str) -> str | None:
        for hashed in (uid_hash, path_hash):
            if hashed in keys:
                matched.add(keys[hashed])
                return labels[keys[hashed]]
        return None

    if labels:
        for uid_hash, record in mapping.images.items():
            found = labels_of(uid_hash, record["path"])
            if found is not None and found != record["row"]["labels"]:
                record["row"]["labels"] = found
                result.relabelled += 1

    planned = _name_images(mapping, converted.values(), result)
    first = len(mapping.images)
    for number, (name, image) in enumerate(planned):
        job.report(number, len(planned), "moving images in place", stage="saving")
        folder = out / f"images_{(first + number) // MAX_IMAGES_PER_FOLDER + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(image.staged, folder / name)
        found = labels_of(image.uid_hash, image.path_hash)
        if found is None:
            result.unlabelled.append(image.file)
        mapping.images[image.uid_hash] = {
            "path": image.path_hash, "size": image.size, "mtime_ns": image.mtime_ns,
            "row": {"image": name, "labels": found or "", "age": image.age, "sex": image.sex,
                    "view": image.view, "width": image.width, "height": image.height,
                    "spacing": list(image.spacing) if image.spacing else None},
        }
        result.padded += image.padded
        result.unwindowed += not image.windowed
    result.added = len(planned)
    result.unlabelled.sort()
    result.unmatched_labels = len(labels) - len(matched)
    mapping.save()
    rows = sorted((record["row"] for record in mapping.images.values()), key=lambda row: row["image"])
    atomic_write_text(out / DATA_ENTRY_NAME, data_entry_text(rows), newline="\r\n")
    atomic_write_text(out / BBOX_NAME, BBOX_HEADER + "\n")
    result.total = len(rows)
    result.unlabelled_total = sum(not row["labels"] for row in rows)
    job.report(len(planned), len(planned), "saved", stage="saving")
    return result


def _name_images(mapping: _Mapping, images, result: ImportResult) -> list[tuple[str, _Converted]]:
    """(PPPPPPPP_FFF.png, image) for each new image, sorted by name. New patients get the next ids in the
    order of their salted hashes; each patient's new images follow their earlier ones by study date."""
    by_patient: dict[str, list[_Converted]] = {}
    for image in images:
        by_patient.setdefault(image.patient, []).append(image)
    for patient in sorted(p for p in by_patient if p not in mapping.patients):
        mapping.patients[patient] = {"id": mapping.next_patient, "images": 0}
        mapping.next_patient += 1
        result.new_patients += 1
    planned = []
    for patient, found in by_patient.items():
        entry = mapping.patients[patient]
        for image in sorted(found, key=lambda image: image.order):
            planned.append((f"{entry['id']:08d}_{entry['images']:03d}.png", image))
            entry["images"] += 1
    return sorted(planned, key=lambda item: item[0])


def data_entry_text(rows: list[dict]) -> str:
    """Data_Entry_2017.csv in the 2017 release's style; every cell is neutralised against spreadsheet
    formulas (`core.csvsafe`, the one place for every CSV the tool writes)."""
    lines = []
    for row in rows:
        patient, follow_up = row["image"].removesuffix(".png").split("_")
        age = f"{row['age']:03d}Y" if row["age"] is not None else ""
        spacing = [f"{value:.6g}" for value in row["spacing"]] if row["spacing"] else ["", ""]
        cells = [row["image"], row["labels"], str(int(follow_up)), patient, age, row["sex"], row["view"],
                 str(row["width"]), str(row["height"]), *spacing]
        lines.append([*cells, ""])  # the empty last cell is the 2017 release's trailing comma
    return csv_text(lines, header=DATA_ENTRY_HEADER)
