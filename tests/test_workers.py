"""The job runner: results, cancellation and failures reach the GUI thread as signals."""
from __future__ import annotations

import time

from app.workers import JobRunner
from core.errors import UserError


def _count(job, n, emit=None):
    for i in range(n):
        job.check()
        if emit:
            emit(i)
        job.report(i + 1, n)
        time.sleep(0.001)
    return n * 2


def test_result_and_progress_arrive_as_signals(qtbot):
    runner = JobRunner(_count, 20, min_interval=0.0, stream=True)
    seen, messages = [], []
    runner.progress.connect(seen.append)
    runner.message.connect(messages.append)
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        runner.start()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5000)
    assert blocker.args == [40]
    assert seen[-1].done == 20 and seen[-1].total == 20
    assert messages == list(range(20))


def test_stop_request_ends_the_job_as_cancelled(qtbot):
    def forever(job):
        while True:
            job.check()
            time.sleep(0.005)

    runner = JobRunner(forever)
    with qtbot.waitSignal(runner.cancelled, timeout=5000):
        runner.start()
        qtbot.wait(30)
        runner.request_stop()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5000)


def test_a_user_error_becomes_a_one_line_failure(qtbot):
    def bad(job):
        raise UserError("images/x.png: not a PNG file")

    runner = JobRunner(bad)
    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        runner.start()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5000)
    assert blocker.args == ["images/x.png: not a PNG file"]
