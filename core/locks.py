"""One writer per folder: an OS file lock held for the whole job and released when the process dies.

`hold_lock(folder, what)` takes an exclusive `flock` on a small lock file and keeps it until the block
ends; a second process (or a second holder in the same process) gets `FolderInUse`, a UserError that
says "FOLDER is in use by process N". The kernel drops the lock when the holder exits in any way,
kill -9 included, so a crash never leaves a folder locked (only a stale lock file, which the next holder
simply locks again). A release deletes the lock file while still holding it; a process that opened the
file just before sees, once it gets the lock, that its file is no longer the one at that path, and
starts over, so two holders can never each lock a different file.

The lock file of a folder that jobs replace by renaming (a run folder, an export target, a prepared
cache) lives beside it, `.<name>.lock`, so it survives the swap; `acquire(lock_file, ...)` takes any
other lock file (the annotation store keeps its own inside its folder).

POSIX only: where `fcntl` does not exist (Windows) the lock is not taken and every holder proceeds.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_SUFFIX = ".lock"


class FolderInUse(UserError):
    """Another process (or another holder in this one) is writing the same folder."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


class FolderLock:
    """A held lock; `release()` (or leaving `hold_lock`) frees it. Safe to release twice."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                self.path.unlink()  # still holding the lock: see the module docstring
            except OSError:
                pass  # a read-only folder or an already removed file: a stale file harms nothing
            os.close(fd)  # closing the descriptor drops the flock

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown: the OS closes the descriptor anyway
            pass


def lock_file_for(folder: str | os.PathLike) -> Path:
    """`.<name>.lock` beside `folder`: it stays put when the folder itself is swapped by a rename."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name.lstrip('.')}{LOCK_SUFFIX}"


def holder_pid(lock_file: str | os.PathLike) -> int | None:
    """The process id the last holder wrote into `lock_file`, or None."""
    try:
        text = Path(lock_file).read_text(encoding="ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def acquire(lock_file: str | os.PathLike, what: str, shown: str | os.PathLike | None = None) -> FolderLock:
    """Take the lock now or raise `FolderInUse` ("SHOWN is in use by process N (WHAT)"); never waits.

    Creating the lock file is also the first write into its folder, so an unwritable place fails here
    with the OSError the caller reports (see `core.atomic.reporting_write_errors`).
    """
    lock_file = Path(lock_file)
    if fcntl is None:
        return FolderLock(lock_file, None)
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(lock_file)
            who = f"process {pid}" if pid else "another process"
            if pid == os.getpid():
                who += " (this one)"
            raise FolderInUse(f"{shown or lock_file} is in use by {who} ({what}); wait for it to finish "
                              f"or stop it", pid) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock_file):
            break
        os.close(fd)  # the holder we waited for deleted this file on release: lock the current one
    try:  # record who holds it, for the message the next one gets
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except OSError:
        pass  # the lock is held; only the message would lack the process id
    return FolderLock(lock_file, fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def hold_lock(folder: str | os.PathLike, what: str) -> Iterator[FolderLock]:
    """Hold the lock of `folder` (a run folder, an export target, a cache) for the whole block.

    `what` says what the folder is ("run folder", "export target") in the message the second holder
    gets: "<folder> is in use by process N (run folder); ...". The folder need not exist yet; its
    parent is created if needed (the lock file lives there). OSError (a read-only or full disk)
    propagates for the caller to report (`core.atomic.reporting_write_errors`).
    """
    lock_file = lock_file_for(folder)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = acquire(lock_file, what, shown=folder)
    try:
        yield lock
    finally:
        lock.release()
