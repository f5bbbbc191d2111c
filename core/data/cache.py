"""The prepared training cache: chosen images decoded once, resized, in one uint8 memory-mapped array.

A cache folder holds
    images.npy   uint8 (N, S, S), opened with `np.load(mmap_mode="r")` (never pickle)
    meta.csv     one row per image: image, patient_id, age, sex, view, finding_labels, label, class, split
    failed.txt   one line per selected image that could not be used: `name<TAB>reason`
    cache.json   the config, the classes, the counts and the fingerprint of the inputs

Selection (`multi_label`):
- "exclude" (default): an image is used when its labels are exactly one of the classes.
- "rarest": images whose labels are ALL among the classes are used too; a multi-label image goes to the
  listed class that is rarest in the whole dataset (fewest images carrying it). The rarer finding is
  the more specific one and the class that most needs examples. Images carrying any label outside the
  classes are never used: they show a finding the model has no class for.

The cache is built in a temporary sibling folder and swapped in at the end, so a cancelled or crashed
run never leaves a partial cache. The fingerprint (config + every selected file's name, class, split,
size and mtime) decides whether a re-run can reuse the cache or must rebuild it.

Faults: one prepare per cache folder at a time (an OS lock on `.<name>.lock` beside it, `core.locks`);
at its start, prepare removes what a killed prepare left (`.<name>.building-*`) and finishes or undoes
a swap a kill interrupted (`core.cleanup.recover_swap`). `images.npy` is preallocated and written with
plain writes, never through a writable memory map: on a full disk a mapped write kills the process
with SIGBUS, while a write returns ENOSPC, which becomes a one-line CacheError naming the folder after
the partial cache is removed. `meta.csv` cells are neutralised against spreadsheet formulas
(`core.csvsafe`) and read back as written.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import threading
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.atomic import describe_os_error
from core.cleanup import recover_swap, remove_leftovers
from core.csvsafe import neutralise_frame, restore_frame
from core.data.annotations import apply_saved_edits
from core.data.dataset import DatasetIndex, open_dataset
from core.errors import UserError
from core.data.images import ImageReadError, load_image
from core.jobs import Job
from core.labels import DEFAULT_CLASSES, LABEL_INDEX, NIH_LABELS, canonical_label
from core.locks import acquire, lock_file_for
from core.options import option

CACHE_VERSION = 1
MULTI_LABEL_RULES = ("exclude", "rarest")
IMAGES_NAME, META_NAME, FAILED_NAME, INFO_NAME = "images.npy", "meta.csv", "failed.txt", "cache.json"
META_COLUMNS = ("image", "patient_id", "age", "sex", "view", "finding_labels", "label", "class", "split")
META_TEXT_COLUMNS = ("image", "sex", "view", "finding_labels", "class", "split")
STAGING = "building"  # `.<name>.building-<pid>-<token>`: a cache being written
CHUNK = 32  # images per worker task: few enough tasks to keep overhead low, many enough for a smooth bar


class CacheError(UserError):
    """A cache cannot be built (bad options, nothing to prepare, unwritable folder) or opened."""


@dataclass(frozen=True)
class PrepareConfig:
    """What to prepare. The CLI, the GUI form and the tests all build this."""

    data: str = option("", "The NIH dataset folder.")
    out: str = option("", "Cache folder to create (new, empty, or an earlier cache, which is reused or rebuilt).")
    classes: tuple[str, ...] = option(DEFAULT_CLASSES, "NIH labels, one class each, in label order.")
    size: int = option(128, "Side of the square images in pixels.")
    multi_label: str = option("exclude", "exclude: only images whose labels are exactly one class; rarest: also "
                                         "images whose labels are all classes, given to the rarest of them.",
                              choices=MULTI_LABEL_RULES)
    seed: int = option(0, "Seed of the patient-level split when the dataset has no official split lists.")
    workers: int = option(0, "Decoding threads (0 = one per core).")

    def checked(self) -> "PrepareConfig":
        """The same config with canonical class names; raises CacheError naming the bad option."""
        if not self.data or not self.out:
            raise CacheError("prepare: give --data (the NIH folder) and --out (the cache folder)")
        classes = tuple(canonical_label(name) for name in self.classes)
        unknown = [name for name in classes if name not in LABEL_INDEX]
        if unknown:
            raise CacheError(f"--classes: unknown label(s) {', '.join(unknown)}; known: {', '.join(NIH_LABELS)}")
        if not classes or len(set(classes)) != len(classes):
            raise CacheError("--classes: name at least one label, each once")
        if self.multi_label not in MULTI_LABEL_RULES:
            raise CacheError(f"--multi-label: {self.multi_label!r} is not one of {', '.join(MULTI_LABEL_RULES)}")
        if not 8 <= self.size <= 2048:
            raise CacheError(f"--size: {self.size} is outside 8..2048")
        return PrepareConfig(str(Path(self.data).resolve()), str(Path(self.out).resolve()), classes, self.size,
                             self.multi_label, self.seed, self.workers)


@dataclass
class PrepareResult:
    path: Path
    prepared: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)
    per_class: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False

    def to_json(self) -> dict:
        return {"path": str(self.path), "prepared": self.prepared, "failed": len(self.failed),
                "failed_images": [{"image": name, "reason": why} for name, why in self.failed],
                "per_class": self.per_class, "seconds": round(self.seconds, 3), "reused": self.reused}


def prepare(config: PrepareConfig, job: Job | None = None) -> PrepareResult:
    """Select, decode and resize the images of `config` into a cache folder, or reuse an identical one."""
    start = time.monotonic()
    job = job or Job()
    config = config.checked()
    out = Path(config.out)
    _check_out_folder(out)
    with _only_writer(out):
        index = open_dataset(config.data, split_seed=config.seed)
        apply_saved_edits(index)  # Finding Labels corrected in the app are the ones training learns
        selection = select_images(index, config.classes, config.multi_label)
        fingerprint = _fingerprint(config, selection)
        info = _read_info(out)
        if info is not None and info.get("fingerprint") == fingerprint and (out / IMAGES_NAME).is_file():
            failed = _read_failed(out / FAILED_NAME)
            return PrepareResult(out, info["prepared"], failed, info["per_class"], time.monotonic() - start, True)
        job.check()
        failed = _build_and_swap_in(out, config, selection, fingerprint, job)
        info = _read_info(out)
    return PrepareResult(out, info["prepared"], failed, info["per_class"], time.monotonic() - start, False)


@contextmanager
def _only_writer(out: Path):
    """Hold the cache folder's lock for the whole prepare; first, clean up after killed prepares."""
    try:
        lock = acquire(lock_file_for(out), "a prepare is writing it", shown=out)
    except OSError as error:  # creating the lock file is the first write beside `out`
        raise CacheError(f"--out {out}: cannot write there ({describe_os_error(error)})") from error
    try:
        try:
            recover_swap(out, (STAGING,), is_complete=lambda folder: (folder / INFO_NAME).is_file())
            remove_leftovers(out.parent, (".write-test-*",))  # the write probe of earlier versions
        except OSError as error:
            raise CacheError(f"--out {out}: cannot clean up after an interrupted prepare "
                             f"({describe_os_error(error)})") from error
        yield
    finally:
        lock.release()


def _build_and_swap_in(out: Path, config: PrepareConfig, selection: pd.DataFrame, fingerprint: str,
                       job: Job) -> list[tuple[str, str]]:
    """Build in a hidden sibling folder and swap it in; on any failure remove it and keep `out` as it was.
    A disk that refuses the writes (full, read-only, quota) is a CacheError naming `out`."""
    staging = out.parent / f".{out.name}.{STAGING}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        failed = _build(staging, config, selection, fingerprint, job)
        _swap_in(staging, out)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            need = len(selection) * config.size ** 2
            raise CacheError(f"--out {out}: cannot write the cache ({describe_os_error(error)}; the images "
                             f"need {need / 1e6:,.1f} MB); nothing was kept") from error
        raise
    return failed


def is_prepared_cache(path) -> bool:
    return (Path(path) / INFO_NAME).is_file()


def ensure_cache(data, out, classes, size: int, job: Job | None = None) -> Path:
    """A prepared cache for `data`: `data` itself when it is one, else the NIH folder `data` prepared at
    `size` px with `classes` into `out` (reused when nothing changed). The one place where a task turns
    "a cache or a dataset folder" into a cache."""
    data = Path(data)
    if is_prepared_cache(data):
        return data
    if not data.is_dir():
        raise CacheError(f"{data}: no such folder (expected a prepared cache or an NIH dataset folder)")
    return prepare(PrepareConfig(data=str(data), out=str(out), classes=tuple(classes), size=size), job).path


def select_images(index: DatasetIndex, classes, multi_label: str = "exclude") -> pd.DataFrame:
    """The rows to prepare, with `label` (class index) and `class`; raises CacheError for an empty class."""
    chosen = np.array([LABEL_INDEX[name] for name in classes])
    inside = index.labels[:, chosen]
    outside = np.delete(index.labels, chosen, axis=1).any(axis=1)
    count = inside.sum(axis=1)
    if multi_label == "exclude":
        keep = (count == 1) & ~outside
        label = inside.argmax(axis=1)
    else:
        keep = (count >= 1) & ~outside
        carriers = index.labels[:, chosen].sum(axis=0)
        rarity = np.argsort(np.argsort(carriers, kind="stable"), kind="stable")  # 0 = rarest class
        label = np.where(inside, rarity, len(classes)).argmin(axis=1)
    table = index.table.loc[keep, ["image", "path", "patient_id", "age", "sex", "view", "finding_labels", "split"]]
    table = table.assign(label=label[keep].astype(np.int32), **{"class": np.asarray(classes)[label[keep]]})
    counts = np.bincount(table["label"], minlength=len(classes))
    empty = [name for name, n in zip(classes, counts) if n == 0]
    if empty:
        raise CacheError(f"--classes: no images of {', '.join(empty)} in {index.data_entry} "
                         f"(multi-label rule {multi_label!r})")
    return table.reset_index(drop=True)


class PreparedCache:
    """An opened cache folder. `.images` is a read-only memmap; nothing is loaded into memory up front."""

    def __init__(self, path: Path, info: dict, images: np.ndarray, meta: pd.DataFrame):
        self.path = path
        self.info = info
        self.images = images
        self.meta = meta
        self.classes: list[str] = list(info["classes"])
        self.size: int = int(info["size"])
        self.labels = meta["label"].to_numpy(np.int32)
        self.split = meta["split"].to_numpy(str)

    @classmethod
    def open(cls, path) -> "PreparedCache":
        path = Path(path)
        info = _read_info(path)
        if info is None:
            raise CacheError(f"{path}: not a prepared cache (no {INFO_NAME}); run `main.py prepare` first")
        try:
            images = np.load(path / IMAGES_NAME, mmap_mode="r", allow_pickle=False)
            meta = pd.read_csv(path / META_NAME, dtype={"image": str, "sex": str, "view": str, "split": str,
                                                        "class": str, "finding_labels": str},
                               keep_default_na=False, na_values={"age": [""]})
            meta = restore_frame(meta, META_TEXT_COLUMNS)
        except (OSError, ValueError) as error:
            raise CacheError(f"{path}: damaged cache ({error}); prepare it again") from None
        if images.dtype != np.uint8 or images.shape[0] != len(meta) or images.shape[1:] != (info["size"],) * 2:
            raise CacheError(f"{path}: {IMAGES_NAME} does not match {META_NAME}; prepare it again")
        return cls(path, info, images, meta)

    def __len__(self) -> int:
        return len(self.labels)


def _check_out_folder(out: Path) -> None:
    """`out` may be new, empty or an earlier cache; anything else is the user's and is never touched.
    (Whether the place is writable shows when `_only_writer` creates the lock file beside it.)"""
    if out.exists() and not out.is_dir():
        raise CacheError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / INFO_NAME).is_file():
        raise CacheError(f"--out {out}: folder is not empty and is not a prepared cache; choose another")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(f"--out {out}: cannot write there ({describe_os_error(error)})") from error


def _fingerprint(config: PrepareConfig, selection: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    settings = {key: value for key, value in asdict(config).items() if key not in ("out", "workers")}
    digest.update(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for name, path, label, split in selection[["image", "path", "label", "split"]].itertuples(index=False):
        try:
            stat = os.stat(path) if path else None
        except OSError:
            stat = None
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        digest.update(f"{name}\t{path}\t{label}\t{split}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _build(folder: Path, config: PrepareConfig, selection: pd.DataFrame, fingerprint: str,
           job: Job) -> list[tuple[str, str]]:
    """Decode into `folder`; returns the failed images. Rows that failed are dropped from the arrays.
    Files are written in the order that makes `cache.json` the last: its presence means complete."""
    with ImageArrayFile(folder / IMAGES_NAME, len(selection), config.size) as images:
        reasons = _decode_all(selection["path"].tolist(), selection["image"].tolist(), images, config, job)
        ok = np.array([reason is None for reason in reasons], dtype=bool)
        if not ok.all():
            images.keep_rows(ok)
    failed = [(name, reason) for name, reason in zip(selection["image"], reasons) if reason is not None]
    kept = selection.loc[ok]
    neutralise_frame(kept[list(META_COLUMNS)]).to_csv(folder / META_NAME, index=False)
    (folder / FAILED_NAME).write_text("".join(f"{_one_line(name)}\t{_one_line(reason)}\n" for name, reason in failed),
                                      encoding="utf-8")
    counts = np.bincount(kept["label"], minlength=len(config.classes))
    info = {"version": CACHE_VERSION, "config": asdict(config), "classes": list(config.classes),
            "size": config.size, "prepared": int(len(kept)), "failed": len(failed),
            "per_class": {name: int(n) for name, n in zip(config.classes, counts)},
            "splits": {name: int((kept["split"] == name).sum()) for name in ("train", "val", "test")},
            "fingerprint": fingerprint}
    (folder / INFO_NAME).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return failed


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())


class ImageArrayFile:
    """A uint8 (N, S, S) `.npy` file written row by row with positioned writes (thread-safe).

    The file is preallocated first, so a disk without room fails at once (ENOSPC) rather than after an
    hour of decoding, and every later write error is an OSError: never a memory-mapped write, which
    kills the process with SIGBUS when the disk fills up.
    """

    def __init__(self, path: Path, rows: int, size: int):
        self.path, self.rows, self.row_bytes = path, rows, size * size
        self._shape_tail = (size, size)
        self._header = self._header_bytes(rows)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
        self._guard = threading.Lock()  # only for the seek+write fallback where os.pwrite does not exist
        try:
            self._write_at(self._header, 0)
            self._preallocate(len(self._header) + rows * self.row_bytes)
        except BaseException:
            self.close()
            raise

    def _header_bytes(self, rows: int) -> bytes:
        """The .npy header; its length does not depend on `rows` (numpy pads the first axis to 21 digits)."""
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (rows, *self._shape_tail)})
        return buffer.getvalue()

    def _preallocate(self, total: int) -> None:
        if not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(self._fd, 0, total)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
                raise
            # the file system cannot preallocate (EOPNOTSUPP, EINVAL): a full disk shows at a write instead

    def _write_at(self, data, offset: int) -> None:
        view = memoryview(data).cast("B")
        while view:
            if hasattr(os, "pwrite"):
                written = os.pwrite(self._fd, view, offset)
            else:
                with self._guard:
                    os.lseek(self._fd, offset, os.SEEK_SET)
                    written = os.write(self._fd, view)
            view, offset = view[written:], offset + written

    def _read_at(self, offset: int, length: int) -> bytes:
        with self._guard:
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, length)

    def __setitem__(self, row: int, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.shape != self._shape_tail:
            raise ValueError(f"row {row}: shape {image.shape}, expected {self._shape_tail}")
        self._write_at(image, len(self._header) + row * self.row_bytes)

    def keep_rows(self, ok: np.ndarray) -> None:
        """Drop the rows where `ok` is False in place (rows move up), then fix the header and the length."""
        start, kept = len(self._header), 0
        for row in np.flatnonzero(ok):
            if row != kept:
                self._write_at(self._read_at(start + row * self.row_bytes, self.row_bytes), start + kept * self.row_bytes)
            kept += 1
        header = self._header_bytes(kept)
        if len(header) != start:  # numpy < 1.24 did not pad the header for growth
            raise RuntimeError("the .npy header changed length; cannot shrink in place")
        self._write_at(header, 0)
        os.ftruncate(self._fd, start + kept * self.row_bytes)
        self.rows = kept

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "ImageArrayFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode_all(paths: list[str], names: list[str], images: ImageArrayFile, config: PrepareConfig,
                job: Job) -> list[str | None]:
    """Decode and letterbox every image into `images[i]` on all cores; the reason per failed image.

    Threads, not processes: OpenCV releases the GIL while decoding and resizing, and the workers write
    their rows straight into the file. OpenCV's own thread pool is set to one thread meanwhile, so the
    two pools do not fight over the cores. Any error (a full disk, a stop request) stops every worker.
    """
    reasons: list[str | None] = [None] * len(paths)
    stop = threading.Event()

    def work(start: int) -> int:
        for i in range(start, min(start + CHUNK, len(paths))):
            if stop.is_set():
                break
            if not paths[i]:
                reasons[i] = f"{names[i]}: no regular file of that name in the dataset folders"
                continue
            try:
                images[i] = load_image(paths[i], config.size)
            except ImageReadError as error:
                reasons[i] = str(error)
            except cv2.error as error:  # a decodable file OpenCV still cannot resize: skip it all the same
                reasons[i] = f"{paths[i]}: cannot resize ({error.err or error})"
        return min(start + CHUNK, len(paths)) - start

    workers = config.workers or os.cpu_count() or 1
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    done = 0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(work, start) for start in range(0, len(paths), CHUNK)]
            try:
                for future in futures:
                    done += future.result()
                    job.report(done, len(paths), "decoding")
                    job.check()
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        cv2.setNumThreads(previous_threads)
    return reasons


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` (absent, empty or an old cache) with the finished `staging` folder. A kill between
    the two renames leaves `.<name>.old-*` and a complete staging folder: the next prepare finishes it."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_info(folder: Path) -> dict | None:
    try:
        return json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CacheError(f"{folder / INFO_NAME}: unreadable ({error}); delete the folder and prepare again") from None


def _read_failed(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [(row[0], row[1] if len(row) > 1 else "") for row in rows]
