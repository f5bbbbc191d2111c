"""Run a core job in a QThread and turn its reports into Qt signals.

Every long job in core takes a `core.jobs.Job`. `JobRunner` creates that Job, runs
`function(job, *args, **kwargs)` on a worker thread and emits, always on the GUI thread (queued
connections): `progress(Progress)`, `message(object)` for anything the job wants to stream (metrics
rows, sample grids), then exactly one of `finished(result)`, `cancelled()` or `failed(str)`.
`failed` carries a one-line message for the user; the traceback goes to the log, never to a dialog.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from core.errors import UserError
from core.jobs import Cancelled, Job, Progress

log = logging.getLogger(__name__)


class _Worker(QObject):
    progress = Signal(object)
    message = Signal(object)
    finished = Signal(object)
    cancelled = Signal()
    failed = Signal(str)

    def __init__(self, function: Callable[..., Any], args: tuple, kwargs: dict, min_interval: float):
        super().__init__()
        self._function = function
        self._args = args
        self._kwargs = kwargs
        self.job = Job(on_progress=self.progress.emit, min_interval=min_interval)

    @Slot()
    def run(self) -> None:
        try:
            result = self._function(self.job, *self._args, **self._kwargs)
        except Cancelled:
            self.cancelled.emit()
        except UserError as error:
            self.failed.emit(str(error))
        except Exception as error:  # noqa: BLE001 - a worker must never take the GUI down
            log.error("job %s failed:\n%s", getattr(self._function, "__name__", self._function), traceback.format_exc())
            self.failed.emit(f"{type(error).__name__}: {error}")
        else:
            self.finished.emit(result)


class JobRunner(QObject):
    """Owns one worker thread for one job. Keep a reference until `done` is emitted.

    `function` is called as `function(job, *args, **kwargs)`. With `stream=True` it also gets
    `emit=callable`: each `emit(obj)` from the worker thread arrives as `message(obj)` on the GUI thread
    (metrics rows, sample grids, partial results).
    """

    progress = Signal(object)
    message = Signal(object)
    finished = Signal(object)
    cancelled = Signal()
    failed = Signal(str)
    done = Signal()

    def __init__(self, function: Callable[..., Any], *args: Any, min_interval: float = 0.1,
                 stream: bool = False, parent: QObject | None = None, **kwargs: Any):
        super().__init__(parent)
        self._thread = QThread()
        self._worker = _Worker(function, args, kwargs, min_interval)
        if stream:
            kwargs["emit"] = self._worker.message.emit
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        for name in ("progress", "message", "finished", "cancelled", "failed"):
            getattr(self._worker, name).connect(getattr(self, name))
        for name in ("finished", "cancelled", "failed"):
            # Direct: a queued quit would wait for the GUI thread's event loop, so `wait()` called on
            # the GUI thread (closing the window) would never return. QThread.quit is thread-safe.
            getattr(self._worker, name).connect(self._thread.quit, Qt.DirectConnection)
        self._thread.finished.connect(self.done)

    @property
    def job(self) -> Job:
        return self._worker.job

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._worker.job.request_stop()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, milliseconds: int = -1) -> bool:
        """Block until the thread ends (use only when closing the window)."""
        return self._thread.wait() if milliseconds < 0 else self._thread.wait(milliseconds)
