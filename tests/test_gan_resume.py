"""Resuming a run: exactly where it stopped (also after a time budget or a stop before the first checkpoint),
under another spelling of its folder, and never with another config or a corrupt checkpoint. Split from
test_gan_trainer.py so the two files run on both test workers at once."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from core.gan.runs import read_metrics
from core.gan.trainer import train
from tests.test_gan_trainer import Recorder, _weights, synthetic_data, tiny_config


def test_resume_continues_the_same_run(tmp_path):
    data = synthetic_data()
    train(tiny_config(tmp_path / "straight", steps=4), data=data)
    train(tiny_config(tmp_path / "split", steps=2), data=data)
    summary = train(tiny_config(tmp_path / "split", steps=4, resume=True), data=data)
    assert summary.step == 4
    for a, b in zip(_weights(tmp_path / "straight" / "generator.keras"),
                    _weights(tmp_path / "split" / "generator.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    split = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    assert [r["g_loss"] for r in split] == pytest.approx([r["g_loss"] for r in straight], rel=1e-3)


def test_resume_refuses_a_different_config_and_a_new_run_refuses_an_old_folder(tmp_path):
    data = synthetic_data()
    train(tiny_config(tmp_path / "run", steps=1), data=data)
    with pytest.raises(UserError, match="different config.*ema_decay"):
        train(tiny_config(tmp_path / "run", steps=2, ema_decay=0.9, resume=True), data=data)
    with pytest.raises(UserError, match="already holds a trained run"):
        train(tiny_config(tmp_path / "run", steps=2), data=data)
    with pytest.raises(UserError, match="nothing to resume"):
        train(tiny_config(tmp_path / "empty", resume=True), data=data)


def test_corrupt_checkpoint_is_a_user_error_and_stays_on_disk(tmp_path):
    data = synthetic_data()
    train(tiny_config(tmp_path / "run", steps=1), data=data)
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000001.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(UserError, match="step_0000001.npz: corrupt"):
        train(tiny_config(tmp_path / "run", steps=2, resume=True), data=data)
    assert checkpoint.exists()


def test_resume_accepts_another_spelling_of_the_run_folder_and_lower_learning_rates(tmp_path, monkeypatch):
    data = synthetic_data()
    train(tiny_config(tmp_path / "run", steps=1), data=data)
    monkeypatch.chdir(tmp_path)
    summary = train(tiny_config("run/", steps=2, lr_g=1e-4, lr_d=2e-4, resume=True), data=data)
    assert summary.step == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr_g"] == 1e-4


def test_a_run_stopped_before_its_first_checkpoint_can_resume_and_restart(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    train(tiny_config(run, steps=2), data=data)
    for checkpoint in (run / "checkpoints").glob("*.npz"):   # as if killed before the first checkpoint
        checkpoint.unlink()
    job = Recorder()
    assert train(tiny_config(run, steps=2, resume=True), job=job, data=data).step == 2
    assert any("starting the run again from step 0" in line for line in job.logs)
    assert [row["step"] for row in read_metrics(run / "metrics.jsonl")] == [1, 2]
    for checkpoint in (run / "checkpoints").glob("*.npz"):
        checkpoint.unlink()
    assert train(tiny_config(run, steps=3), data=data).step == 3      # a new run over it is allowed too


def test_a_time_budget_stops_cleanly_within_a_logging_interval_and_resumes_exactly(tmp_path, monkeypatch):
    import core.gan.trainer as trainer

    clock = {"now": 1000.0}
    from core.gan.engine import GanEngine

    real_step = GanEngine.train_step

    def timed_step(self, inputs, step):       # every step "takes" 20 s of wall time
        clock["now"] += 20.0
        return real_step(self, inputs, step)

    monkeypatch.setattr(GanEngine, "train_step", timed_step)
    monkeypatch.setattr(trainer.time, "monotonic", lambda: clock["now"])
    data = synthetic_data()
    summary = train(tiny_config(tmp_path / "budget", steps=6, minutes=1.0), data=data)   # 60 s: 3 steps
    assert (summary.step, summary.reason, summary.stopped) == (3, "time budget", False)
    assert (tmp_path / "budget" / "checkpoints" / "step_0000003.npz").exists()
    assert (tmp_path / "budget" / "generator.keras").exists()
    finished = train(tiny_config(tmp_path / "budget", steps=6, minutes=0.0, resume=True), data=data)
    assert (finished.step, finished.reason) == (6, "finished")
    train(tiny_config(tmp_path / "straight", steps=6), data=data)
    # Bit for bit: batches and in-step randomness are keyed by step, and tests/conftest.py gives
    # TensorFlow one compute thread, so no sum depends on how a busy machine schedules a thread pool.
    for a, b in zip(_weights(tmp_path / "straight" / "generator.keras"),
                    _weights(tmp_path / "budget" / "generator.keras"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_budget_eta_counts_only_the_steps_after_the_first_since_start_or_resume():
    """Issue 10: after Resume with budget left, the bar must not read 'n/n steps, ETA 00:00'. The first
    step (compiling) is not a speed sample; before a second step the end is one step ahead."""
    from core.gan.trainer import _expected_total

    assert _expected_total(80, 0, 0.0, 1000, 600.0) == 81                  # just resumed: speed unknown
    assert _expected_total(90, 9, 9.0, 1000, 300.0) == 390                 # 1 step/s, 300 s left
    assert _expected_total(90, 9, 9.0, 200, 300.0) == 200                  # the run's end comes first
    assert _expected_total(90, 9, 9.0, 1000, -5.0) == 90                   # budget spent: ends now
    assert _expected_total(90, 9, 9.0, 1000, float("inf")) == 1000         # no budget
