"""The one protocol every long job follows: progress and events out, a cooperative stop request in.

A core task (`core/tasks.py`) takes a `Job` and calls, as it goes:
- `job.report(done, total, message, stage=...)`: progress. `stage` names what is happening
  ("preparing", "compiling", "training", "saving", ...); the rate behind the ETA is measured from the
  first report of the current stage, so a resumed run or a cache that was prepared first does not
  distort it (the ETA counts only the work done since the stage began);
- `job.emit(kind, payload)`: anything else a front end may show while the task runs
  (`"log"` text, `"metrics"` rows, `"samples"` grids);
- `job.check()` at safe points: raises `Cancelled` once `job.request_stop()` was called, from any thread.

Every task ends in one of three ways: it returns its result, raises `UserError` (bad input, the message
names the file and the problem), or raises `Cancelled` (stopped on request; `Cancelled.result` may hold
what was saved, e.g. a training run's summary after its checkpoint). The CLI listens with a terminal
progress bar (`cli/terminal.py`); the app's worker turns the same calls into Qt signals (`app/workers.py`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


class Cancelled(Exception):
    """Raised by `Job.check()` after a stop was requested; the task has left its outputs consistent.
    `result` is what the task saved before stopping (None when it saved nothing)."""

    def __init__(self, message: str = "stopped on request", result: Any = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str = ""
    elapsed: float = 0.0          # seconds since the job started
    stage: str = ""
    stage_done: int = 0           # units done since the stage's first report
    stage_elapsed: float = 0.0    # seconds since the stage's first report

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the speed measured since the stage began, or None before there is a speed."""
        if self.total <= 0:
            return None
        if self.done >= self.total:
            return 0.0
        if self.stage_done <= 0 or self.stage_elapsed <= 0:
            return None
        return max(0.0, self.stage_elapsed / self.stage_done * (self.total - self.done))


ProgressListener = Callable[[Progress], None]
EventListener = Callable[[str, Any], None]


class Job:
    """Progress and events out, stop in. Thread-safe: `request_stop` may be called from any thread."""

    def __init__(self, on_progress: ProgressListener | None = None, min_interval: float = 0.1,
                 on_event: EventListener | None = None):
        self._on_progress = on_progress
        self._on_event = on_event
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._last_emit = -1.0
        self._min_interval = min_interval
        self._stage: str | None = None
        self._stage_start = (0, self._start)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if a stop was requested."""
        if self._stop.is_set():
            raise Cancelled("stopped on request")

    def report(self, done: int, total: int, message: str = "", stage: str = "") -> None:
        """Send progress to the listener: at most every `min_interval` seconds, except the last report
        of a stage and the first report of a new stage."""
        now = time.monotonic()
        new_stage = stage != self._stage
        if new_stage:
            self._stage = stage
            self._stage_start = (done, now)
        if self._on_progress is None:
            return
        if not new_stage and done < total and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        first_done, first_time = self._stage_start
        self._on_progress(Progress(done, total, message, now - self._start, stage, done - first_done,
                                   now - first_time))

    def emit(self, kind: str, payload: Any) -> None:
        """Stream something to the front end (kinds used: "log", "metrics", "samples")."""
        if self._on_event is not None:
            self._on_event(kind, payload)

    def log(self, text: str) -> None:
        self.emit("log", text)

    def within(self, stage: str) -> "Job":
        """This job seen by a sub-task (e.g. preparing the cache before training): same stop request and
        listeners, and every progress report it makes belongs to `stage`."""
        return _Stage(self, stage)


class ChildJob(Job):
    """A job that passes everything through to `parent` (stop requests, checks, reports, events): the
    base of the views a task hands to a sub-task or a wrapper; subclasses change one thing."""

    def __init__(self, parent: Job):
        self._parent = parent

    def request_stop(self) -> None:
        self._parent.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self._parent.stop_requested

    def check(self) -> None:
        self._parent.check()

    def report(self, done: int, total: int, message: str = "", stage: str = "") -> None:
        self._parent.report(done, total, message, stage=stage)

    def emit(self, kind: str, payload: Any) -> None:
        self._parent.emit(kind, payload)


class _Stage(ChildJob):
    def __init__(self, parent: Job, stage: str):
        super().__init__(parent)
        self._stage_name = stage

    def report(self, done: int, total: int, message: str = "", stage: str = "") -> None:
        self._parent.report(done, total, message, stage=self._stage_name)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
