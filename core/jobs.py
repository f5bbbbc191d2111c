"""The one protocol every long job follows: progress reports out, a cooperative stop request in.

A core function that runs for long takes a `Job` and calls `job.report(done, total, message)` as it
goes and `job.check()` at safe points (after each file, each training step). `check()` raises
`Cancelled` once `job.request_stop()` was called, from any thread. The CLI gives the job a terminal
progress bar as its listener; the GUI's worker gives it a callback that emits a Qt signal. The job
itself stays plain Python, testable without a window (the napari `thread_worker` / Orange3 idea).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


class Cancelled(Exception):
    """Raised by `Job.check()` after a stop was requested; the job has left its outputs consistent."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str = ""
    elapsed: float = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the average rate so far, or None before there is a rate."""
        if self.done <= 0 or self.total <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed / self.done * (self.total - self.done))


ProgressListener = Callable[[Progress], None]


class Job:
    """Progress out, stop in. Thread-safe: `request_stop` may be called from any thread."""

    def __init__(self, on_progress: ProgressListener | None = None, min_interval: float = 0.1):
        self._on_progress = on_progress
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._last_emit = -1.0
        self._min_interval = min_interval

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if a stop was requested."""
        if self._stop.is_set():
            raise Cancelled("stopped on request")

    def report(self, done: int, total: int, message: str = "") -> None:
        """Send progress to the listener, at most every `min_interval` seconds except the last report."""
        if self._on_progress is None:
            return
        now = time.monotonic()
        if done < total and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        self._on_progress(Progress(done, total, message, now - self._start))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
