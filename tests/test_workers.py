"""start_job: a task's results, events, cancellation and failures reach the GUI thread as typed signals."""
from __future__ import annotations

import time

from app.workers import start_job
from core.errors import UserError
from core.jobs import Cancelled


def _count(n, job):
    for i in range(n):
        job.check()
        job.emit("metrics", {"step": i})
        job.log(f"row {i}")
        job.report(i + 1, n, stage="counting")
        time.sleep(0.001)
    return n * 2


def test_result_progress_and_events_arrive_as_typed_signals(qtbot):
    seen, rows, logs = [], [], []
    handle = start_job(_count, 20, in_process=False, min_interval=0.0)
    handle.progress.connect(seen.append)
    handle.metrics.connect(rows.append)
    handle.log.connect(logs.append)
    with qtbot.waitSignal(handle.finished, timeout=5000) as blocker:
        pass
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=5000)
    assert blocker.args == [40]
    assert seen[-1].done == 20 and seen[-1].total == 20 and seen[-1].stage == "counting"
    assert rows == [{"step": i} for i in range(20)] and logs[-1] == "row 19"


def test_stop_request_ends_the_job_as_cancelled(qtbot):
    def forever(_, job):
        while True:
            job.check()
            time.sleep(0.005)

    handle = start_job(forever, None, in_process=False)
    with qtbot.waitSignal(handle.cancelled, timeout=5000) as blocker:
        qtbot.wait(30)
        handle.request_stop()
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=5000)
    assert blocker.args[1] is None


def test_a_partial_result_travels_with_the_cancellation(qtbot):
    def saved_then_stopped(_, job):
        raise Cancelled("stopped at step 2/9; checkpoint saved", result={"step": 2})

    handle = start_job(saved_then_stopped, None, in_process=False)
    with qtbot.waitSignal(handle.cancelled, timeout=5000) as blocker:
        pass
    assert blocker.args == ["stopped at step 2/9; checkpoint saved", {"step": 2}]


def test_a_user_error_becomes_a_one_line_failure(qtbot):
    def bad(_, job):
        raise UserError("images/x.png: not a PNG file")

    handle = start_job(bad, None, in_process=False)
    with qtbot.waitSignal(handle.failed, timeout=5000) as blocker:
        pass
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=5000)
    assert blocker.args == ["images/x.png: not a PNG file"]


def test_a_core_task_runs_in_a_child_process_and_its_user_errors_come_back(qtbot, tmp_path):
    from core.data.cache import PrepareConfig

    handle = start_job("prepare", PrepareConfig(data=str(tmp_path / "missing"), out=str(tmp_path / "c")))
    with qtbot.waitSignal(handle.failed, timeout=60000) as blocker:
        pass
    assert "missing" in blocker.args[0] and "Traceback" not in blocker.args[0]


def test_a_child_task_must_be_named():
    import pytest

    with pytest.raises(ValueError, match="named"):
        start_job(_count, 3, in_process=True)
