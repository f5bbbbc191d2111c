"""Atomic file writes: readers see the old file or the new one, never half of either.

Write to a temporary file in the same folder (so the rename stays on one file system), flush it to
disk, then `os.replace` it over the target. A failure leaves the target untouched and no temp file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, newline: str = "\n") -> None:
    """Encode as UTF-8 with `newline` as the line ending (the NIH 2017 CSVs use CRLF)."""
    if newline != "\n":
        text = text.replace("\n", newline)
    atomic_write_bytes(path, text.encode("utf-8"))
