"""Atomic file writes, and one-line messages for the ways a disk refuses a write.

Write to a temporary file in the same folder (so the rename stays on one file system), flush it to
disk, then `os.replace` it over the target. A failure leaves the target untouched and no temp file;
a kill leaves at most a hidden `.<name>.<random>.tmp` beside it (`core/cleanup.py` removes those at the
next start of the same job). The new file gets the permissions the target had, or for a new file the
ones `open()` would give (0666 minus the umask): `mkstemp` alone makes every file 0600, which locks
colleagues out of a shared dataset folder.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import UserError

TEMP_SUFFIX = ".tmp"

# What the user should read for the errors a full, read-only or foreign disk gives.
_DISK_REASONS = {
    getattr(errno, name, None): reason for name, reason in (
        ("ENOSPC", "no space left on the disk"),
        ("EDQUOT", "disk quota exceeded"),
        ("EROFS", "the file system is read-only"),
        ("EACCES", "permission denied"),
        ("EPERM", "permission denied"),
        ("EFBIG", "file too large for this file system"),
        ("ENAMETOOLONG", "file name too long"),
        ("EIO", "input/output error (a failing disk or a lost network share)"),
    )
}


class WriteError(UserError):
    """A file or folder could not be written: the message names the path and what the disk said."""


def describe_os_error(error: OSError) -> str:
    """A short reason for an OSError, without the path (callers name the path they were writing)."""
    return _DISK_REASONS.get(error.errno) or error.strerror or str(error)


def write_error(path: str | os.PathLike, error: OSError, action: str = "cannot write") -> WriteError:
    """`WriteError("PATH: cannot write (no space left on the disk)")` for an OSError met writing PATH."""
    return WriteError(f"{path}: {action} ({describe_os_error(error)})")


@contextmanager
def reporting_write_errors(path: str | os.PathLike, action: str = "cannot write") -> Iterator[None]:
    """Turn any OSError inside the block into a one-line `WriteError` naming `path`. The block itself
    must leave nothing half-written (use the atomic writers, or remove what it started in `except`)."""
    try:
        yield
    except OSError as error:
        raise write_error(path, error, action) from error


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (the `os.umask` round trip would
    briefly give other threads' new files the wrong permissions)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """`mode` (e.g. 0o600 for a private file) replaces the permissions described in the module docstring."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            if hasattr(os, "fchmod"):
                os.fchmod(stream.fileno(), _mode_for(path) if mode is None else mode)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, newline: str = "\n", mode: int | None = None) -> None:
    """Encode as UTF-8 with `newline` as the line ending (the NIH 2017 CSVs use CRLF)."""
    if newline != "\n":
        text = text.replace("\n", newline)
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_temp_pattern(name: str) -> str:
    """The glob pattern of the temporary files `atomic_write_bytes` makes for a target called `name`."""
    return f".{name}.*{TEMP_SUFFIX}"
