"""Run a core job in a child process, so its imports and Python work never hold the GUI's GIL.

Measured on this machine: training in a worker *thread* froze the window for up to 640 ms at a time
(TensorFlow's imports, Keras building and tracing, saving), because those hold the interpreter lock.
In a child process the GUI thread's worst gap during the same run stays near the timer's own jitter.

`run_in_process(job, target, *args, emit=None)` is itself a job function (run it in a JobRunner):
`target(child_job, *args, emit=...)` runs in a fresh "spawn" process; its progress reports, `emit`
objects and its result or error come back through a multiprocessing queue (pickle between our own
two processes only), and `job.request_stop()` here reaches the child's `job.check()` there.
`target` must be a top-level function of a module that does not need a QApplication.
"""
from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
import traceback
from typing import Any, Callable

from core.errors import UserError
from core.jobs import Cancelled, Job

log = logging.getLogger(__name__)


class ChildProcessError(UserError):
    """The child process ended without a result (killed, crashed, out of memory)."""


def run_in_process(job: Job, target: Callable[..., Any], *args: Any, emit: Callable[[Any], None] | None = None,
                   poll: float = 0.05) -> Any:
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    stop = context.Event()
    process = context.Process(target=_child, args=(target, args, messages, stop), name=target.__name__)
    process.start()
    try:
        while True:
            if job.stop_requested:
                stop.set()
            try:
                kind, payload = messages.get(timeout=poll)
            except queue.Empty:
                if not process.is_alive():
                    raise ChildProcessError(f"{target.__name__}: the worker process ended unexpectedly "
                                            f"(exit code {process.exitcode})") from None
                continue
            if kind == "progress":
                job.report(*payload)
            elif kind == "emit":
                if emit is not None:
                    emit(payload)
            elif kind == "result":
                return payload
            elif kind == "cancelled":
                raise Cancelled(payload)
            elif kind == "user_error":
                raise UserError(payload)
            else:
                raise RuntimeError(payload)
    finally:
        stop.set()
        process.join()


def _forward_stop(stop, job: Job) -> None:
    """Poll, never `stop.wait()`: a process that exits while waiting on a multiprocessing Event leaves
    the parent's `stop.set()` blocked forever, waiting for that sleeper to acknowledge."""
    while not stop.is_set():
        time.sleep(0.05)
    job.request_stop()


def _child(target, args, messages, stop) -> None:
    def progress(report) -> None:
        messages.put(("progress", (report.done, report.total, report.message)))

    job = Job(on_progress=progress)
    threading.Thread(target=_forward_stop, args=(stop, job), daemon=True).start()
    try:
        result = target(job, *args, emit=lambda obj: messages.put(("emit", obj)))
    except Cancelled as error:
        messages.put(("cancelled", str(error)))
    except UserError as error:
        messages.put(("user_error", str(error)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which shows it to the user
        log.error("%s failed in the worker process:\n%s", target.__name__, traceback.format_exc())
        messages.put(("error", f"{type(error).__name__}: {error}"))
    else:
        messages.put(("result", result))
