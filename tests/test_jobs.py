"""The job protocol: stages, events, and an ETA from the speed since the stage began."""
from __future__ import annotations

import pytest

import core.jobs as jobs
from core.jobs import Cancelled, Job


def test_the_eta_after_a_resume_counts_only_the_steps_run_since_the_resume(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock["now"])
    seen = []
    job = Job(seen.append, min_interval=0.0)
    clock["now"] = 400.0                      # five minutes of preparing and compiling first
    job.report(79, 300, stage="training")    # resumed at step 79
    assert seen[-1].eta_seconds is None       # no speed yet
    clock["now"] = 410.0
    job.report(89, 300, stage="training")    # 10 steps in 10 s
    assert seen[-1].eta_seconds == pytest.approx(211.0)
    assert seen[-1].stage == "training" and seen[-1].stage_done == 10


def test_a_new_stage_restarts_the_speed_and_its_first_report_is_never_dropped(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock["now"])
    seen = []
    job = Job(seen.append, min_interval=1.0)
    job.report(10, 100, stage="preparing")
    clock["now"] = 0.5
    job.report(50, 100, stage="preparing")   # throttled
    job.report(0, 1, stage="compiling")      # a new stage always shows
    assert [p.stage for p in seen] == ["preparing", "compiling"]


def test_a_sub_task_reports_in_its_stage_and_shares_the_stop_request():
    seen, events = [], []
    job = Job(seen.append, min_interval=0.0, on_event=lambda kind, payload: events.append((kind, payload)))
    part = job.within("preparing")
    part.report(1, 2, "decoding")
    part.log("prepared")
    assert seen[-1].stage == "preparing" and events == [("log", "prepared")]
    job.request_stop()
    with pytest.raises(Cancelled):
        part.check()


def test_cancelled_carries_what_was_saved():
    stopped = Cancelled("stopped at step 3", result={"step": 3})
    assert stopped.result == {"step": 3} and str(stopped) == "stopped at step 3"
