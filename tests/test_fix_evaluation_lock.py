"""One evaluation job per run: `evaluate` and `augment-bench` hold RUN/evaluation (and --out) for the whole
job, so their reports never interleave, and clean up what a killed one left there."""
from __future__ import annotations

import os

import pytest

from core.errors import UserError
from core.evaluation.augment_bench import AugmentBenchConfig, augment_bench
from core.evaluation.evaluate import EvaluateConfig, evaluate
from core.locks import hold_lock, lock_file_for

LEFTOVERS = (".report.json.k2j4.tmp", ".evaluator_0123456789abcdef.tmp.keras")


def _run_with_leftovers(tmp_path):
    """A run folder without a generator (so a job that gets past the lock stops at loading it) whose
    evaluation folder holds a killed evaluation's temporaries."""
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    for name in LEFTOVERS:
        (run / "evaluation" / name).write_bytes(b"partial")
    return run


JOBS = {"evaluate": lambda run, **kw: evaluate(EvaluateConfig(run=str(run), **kw)),
        "augment-bench": lambda run, **kw: augment_bench(AugmentBenchConfig(run=str(run), **kw))}


@pytest.mark.parametrize("name", JOBS)
def test_a_second_evaluation_job_on_a_run_is_refused_naming_the_holder_and_touches_nothing(tmp_path, name):
    run = _run_with_leftovers(tmp_path)
    with hold_lock(run / "evaluation", "evaluation folder"):
        with pytest.raises(UserError, match=f"{run / 'evaluation'} is in use by process {os.getpid()} "
                                            r"\(this one\) \(evaluation folder\)"):
            JOBS[name](run)
        assert all((run / "evaluation" / leftover).exists() for leftover in LEFTOVERS), \
            "removed the live temporaries of the job holding the folder"


@pytest.mark.parametrize("name", JOBS)
def test_an_evaluation_job_holding_the_folder_removes_a_killed_jobs_temporaries_and_releases_it(tmp_path, name):
    run = _run_with_leftovers(tmp_path)
    (run / "evaluation" / "report.json").write_text("{}")  # finished outputs are not leftovers
    with pytest.raises(UserError, match="config.json"):  # got past the lock, stopped at the missing run config
        JOBS[name](run)
    assert sorted(p.name for p in (run / "evaluation").iterdir()) == ["report.json"]
    assert not lock_file_for(run / "evaluation").exists()  # released: the next job may start
    with hold_lock(run / "evaluation", "evaluation folder"):
        pass


@pytest.mark.parametrize("name", JOBS)
def test_an_out_folder_elsewhere_is_held_too(tmp_path, name):
    run = _run_with_leftovers(tmp_path)
    out = tmp_path / "reports"
    with hold_lock(out, "evaluation folder"):
        with pytest.raises(UserError, match=f"{out} is in use by process {os.getpid()}"):
            JOBS[name](run, out=str(out))


def test_a_mistyped_run_folder_is_reported_and_not_created(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        JOBS["evaluate"](tmp_path / "typo")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "augment-bench"])
def test_the_cli_exits_2_with_one_line_naming_the_holder(tmp_path, capsys, command):
    from cli.main import main

    run = _run_with_leftovers(tmp_path)
    with hold_lock(run / "evaluation", "evaluation folder"):
        assert main([command, "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is in use by process {os.getpid()}" in err[0] and "Traceback" not in err[0], err


def test_the_evaluate_tab_reports_a_folder_in_use_in_one_line(qtbot, tmp_path):
    from app.evaluate_panel import EvaluatePanel

    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    run = _run_with_leftovers(tmp_path)
    panel.set_run(run)
    with hold_lock(run / "evaluation", "evaluation folder"):
        with qtbot.waitSignal(panel.error, timeout=300_000) as blocker:
            panel.augment_button.click()
        qtbot.waitUntil(lambda: not panel.is_running(), timeout=300_000)
    message = blocker.args[0]
    assert f"is in use by process {os.getpid()}" in message and "\n" not in message, message
