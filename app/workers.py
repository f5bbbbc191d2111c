"""The app's one way to run a long task: `start_job(task, config)` -> a `JobHandle` with typed signals.

`task` is the name of a core task (`core.tasks.TASKS`: "prepare", "train", "preview", "export",
"evaluate", "augment-bench") or, for light work that must share objects with the window (opening a
dataset), a plain function `f(config, job)`. The handle's signals arrive on the GUI thread:
`progress(Progress)`, `metrics(dict)`, `samples(SampleGrid)`, `quality(dict)`, `log(str)`, then exactly one of
`finished(result)`, `cancelled(message, partial_result)` or `failed(message)`, then `done()`.
`failed` carries a one-line message for the user; a traceback goes to the log, never to a dialog.

Core tasks run in a child process by default (`in_process=True`): training in a worker *thread* froze
the window for up to 640 ms at a time, because TensorFlow's imports and Keras' tracing hold the
interpreter lock; in a child they cannot (worst GUI gap measured during training: 19-69 ms). The child
runs at a lowered scheduling priority, so it may use every core while the window stays first in line.
Its reports come back through a multiprocessing queue (pickle between our own two processes only), and
`request_stop()` here reaches the child's `job.check()` there. A stop while the child is still building
and compiling the networks (before any training step, so nothing is lost) ends the child after a short
grace period instead of waiting for the compilation to finish.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from core.errors import UserError
from core.jobs import Cancelled, Job

log = logging.getLogger(__name__)

STOP_GRACE_S = 3.0           # how long a stop waits for a child that is still compiling
_KILLABLE_STAGES = ("compiling",)


class ChildProcessError(UserError):
    """The child process ended without a result (killed, crashed, out of memory)."""


class _Worker(QObject):
    progress = Signal(object)
    event = Signal(str, object)
    finished = Signal(object)
    cancelled = Signal(str, object)
    failed = Signal(str)

    def __init__(self, task, config, in_process: bool, min_interval: float):
        super().__init__()
        self._task = task
        self._config = config
        self._in_process = in_process
        self.job = Job(on_progress=self.progress.emit, min_interval=min_interval, on_event=self.event.emit)

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        except RuntimeError:   # the handle was deleted (window closing): nobody is left to tell
            log.warning("job %s ended after its window was closed", self._task)

    def _run(self) -> None:
        try:
            if self._in_process:
                result = run_in_process(self.job, self._task, self._config)
            elif callable(self._task):
                result = self._task(self._config, self.job)
            else:
                from core.tasks import run_task
                result = run_task(self._task, self._config, self.job)
        except Cancelled as stopped:
            self.cancelled.emit(str(stopped), stopped.result)
        except UserError as error:
            self.failed.emit(str(error))
        except Exception as error:  # noqa: BLE001 - a worker must never take the GUI down
            log.error("job %s failed:\n%s", self._task, traceback.format_exc())
            self.failed.emit(f"{type(error).__name__}: {error}")
        else:
            self.finished.emit(result)


class JobHandle(QObject):
    """One running task. Keep a reference until `done` is emitted."""

    progress = Signal(object)
    metrics = Signal(object)
    samples = Signal(object)
    quality = Signal(object)
    log = Signal(str)
    finished = Signal(object)
    cancelled = Signal(str, object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, task, config, in_process: bool, min_interval: float, parent: QObject | None):
        super().__init__(parent)
        self._thread = QThread()
        self._worker = _Worker(task, config, in_process, min_interval)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.event.connect(self._route)
        for name in ("finished", "cancelled", "failed"):
            getattr(self._worker, name).connect(getattr(self, name))
            # Direct: a queued quit would wait for the GUI thread's event loop, so `wait()` called on
            # the GUI thread (closing the window) would never return. QThread.quit is thread-safe.
            getattr(self._worker, name).connect(self._thread.quit, Qt.DirectConnection)
        self._thread.finished.connect(self.done)

    def _route(self, kind: str, payload: Any) -> None:
        signal = {"metrics": self.metrics, "samples": self.samples, "quality": self.quality, "log": self.log}.get(kind)
        if signal is not None:
            signal.emit(payload if kind != "log" else str(payload))

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
        """Block until the task ends (use only when closing the window)."""
        return self._thread.wait() if milliseconds < 0 else self._thread.wait(milliseconds)


_RUNNING: set[JobHandle] = set()   # a handle lives until its task ends, whatever happens to its panel


def stop_all_jobs(timeout_ms: int = 60000) -> None:
    """Ask every running task to stop and wait for it (closing the app, ending a test): a QThread still
    running when the interpreter exits makes Qt abort the process."""
    for handle in list(_RUNNING):
        handle.request_stop()
    for handle in list(_RUNNING):
        handle.wait(timeout_ms)


atexit.register(stop_all_jobs)


def start_job(task: str | Callable[[Any, Job], Any], config, *, in_process: bool = True,
              min_interval: float = 0.1) -> JobHandle:
    """Start `task` on `config` and return its handle (already running).

    The handle has no Qt parent: a panel that is closed while its task runs must not destroy a running
    thread (Qt aborts the process); connections to the panel's slots end with the panel."""
    if in_process and not isinstance(task, str):
        raise ValueError("a task run in a child process is named by its key in core.tasks.TASKS")
    handle = JobHandle(task, config, in_process, min_interval, None)
    _RUNNING.add(handle)
    handle.done.connect(lambda: _RUNNING.discard(handle))
    handle.start()
    return handle


# ---- the child process ---------------------------------------------------------------------------

def run_in_process(job: Job, task: str, config, poll: float = 0.05) -> Any:
    """Run the core task `task` in a fresh "spawn" process, relaying its reports to `job`."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    stop = context.Event()
    process = context.Process(target=_child, args=(task, config, messages, stop), name=f"cxr-{task}")
    process.start()
    stage, stop_seen = "", None
    try:
        while True:
            if job.stop_requested:
                stop.set()
                stop_seen = stop_seen or time.monotonic()
                if stage in _KILLABLE_STAGES and time.monotonic() - stop_seen > STOP_GRACE_S:
                    process.terminate()
                    raise Cancelled("stopped before training began; nothing was lost")
            try:
                kind, payload = messages.get(timeout=poll)
            except queue.Empty:
                if not process.is_alive():
                    raise ChildProcessError(f"{task}: the worker process ended unexpectedly "
                                            f"(exit code {process.exitcode})") from None
                continue
            if kind == "progress":
                stage = payload[3]
                job.report(*payload)
            elif kind == "event":
                job.emit(*payload)
            elif kind == "result":
                return payload
            elif kind == "cancelled":
                raise Cancelled(*payload)
            elif kind == "user_error":
                raise UserError(payload)
            else:
                raise RuntimeError(payload)
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def _forward_stop(stop, job: Job) -> None:
    """Poll, never `stop.wait()`: a process that exits while waiting on a multiprocessing Event leaves
    the parent's `stop.set()` blocked forever, waiting for that sleeper to acknowledge."""
    while not stop.is_set():
        time.sleep(0.05)
    job.request_stop()


def _child(task: str, config, messages, stop) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        os.nice(10)   # the window's process keeps priority over training on the same cores
    except OSError:
        pass

    def progress(report) -> None:
        messages.put(("progress", (report.done, report.total, report.message, report.stage)))

    job = Job(on_progress=progress, on_event=lambda kind, payload: messages.put(("event", (kind, payload))))
    threading.Thread(target=_forward_stop, args=(stop, job), daemon=True).start()
    try:
        from core.tasks import run_task

        result = run_task(task, config, job)
    except Cancelled as stopped:
        messages.put(("cancelled", (str(stopped), stopped.result)))
    except UserError as error:
        messages.put(("user_error", str(error)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which shows it to the user
        log.error("%s failed in the worker process:\n%s", task, traceback.format_exc())
        messages.put(("error", f"{type(error).__name__}: {error}"))
    else:
        messages.put(("result", result))
