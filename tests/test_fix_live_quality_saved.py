"""Live quality is kept in the run folder (RUN/quality.jsonl): reopening a run shows its class-fidelity
curve again, a resumed run measures the steps after its checkpoint anew, and the file is read as
untrusted input (bad lines counted and skipped with a notice, never a traceback)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from core.evaluation import live_quality
from core.evaluation.live_quality import QualityJob, QualityLog, read_quality
from core.gan.runs import RunPaths
from core.jobs import Job


def event(step: int, mass: float = 0.5, nodule: float = 0.25) -> dict:
    return {"step": step, "per_class": {"Mass": mass, "Nodule": nodule}, "overall": (mass + nodule) / 2,
            "chance": 0.5, "judge_accuracy": 0.9}


def test_the_run_folder_names_the_file():
    assert RunPaths(Path("run")).quality == Path("run") / "quality.jsonl"


def test_the_training_job_saves_every_quality_event_it_sends(tmp_path, monkeypatch):
    """QualityJob (what the trainer's job is wrapped in) writes each event to RUN/quality.jsonl as it
    emits it, including the ones judged when training ends. The judge is stood in for (no TensorFlow)."""
    ready = {10: [], 20: [event(10), event(20, 0.75)]}
    monkeypatch.setattr(live_quality.LiveQuality, "observe", lambda self, step, grid, run_dir, data: ready[step])
    monkeypatch.setattr(live_quality.LiveQuality, "close", lambda self: None)
    monkeypatch.setattr(live_quality.LiveQuality, "judge_pending", lambda self: [event(30, 1.0)])
    sent = []
    parent = Job(on_event=lambda kind, payload: sent.append(payload) if kind == "quality" else None)
    config = SimpleNamespace(class_names=lambda: ["Mass", "Nodule"], size=8, data="")
    job = QualityJob(parent, config, columns=4)
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    for step in (10, 20):
        job.emit("samples", SimpleNamespace(step=step, grid=np.zeros((16, 40), np.uint8),
                                            path=run / "samples" / f"step_{step:07d}.png"))
    job.close()
    assert [e["step"] for e in sent] == [10, 20, 30]
    assert read_quality(RunPaths(run).quality) == (sent, None)


def test_a_resumed_run_replaces_the_rows_it_measures_again(tmp_path):
    path = tmp_path / "quality.jsonl"
    first = QualityLog(path)
    for step in (100, 200, 300):
        first.append(event(step))
    resumed = QualityLog(path)  # resumed from the checkpoint at 200: its first grid is step 250
    resumed.append(event(250, 0.9))
    resumed.append(event(300, 1.0))
    events, notice = read_quality(path)
    assert [(e["step"], e["per_class"]["Mass"]) for e in events] == [(100, 0.5), (200, 0.5), (250, 0.9), (300, 1.0)]
    assert notice is None and not list(tmp_path.glob(".*"))  # no temporary left behind


def test_a_disk_error_turns_saving_off_with_one_log_line_and_never_raises(tmp_path):
    logged = []
    (tmp_path / "quality.jsonl").mkdir()  # a name that cannot be written as a file (root ignores permissions)
    saver = QualityLog(tmp_path / "quality.jsonl", log=logged.append)
    saver.append(event(10))
    saver.append(event(20))
    assert saver.failed and len(logged) == 1 and "cannot save live quality" in logged[0]


BAD_LINES = [
    "not json",
    '{"step": 30, "per_class": {"Mass": 0.5}, "overall": 0.5, "chance"',       # torn by a kill
    json.dumps([1, 2]),                                                          # not an object
    json.dumps({**event(40), "step": -1}),
    json.dumps({**event(40), "step": True}),
    json.dumps({**event(40), "step": "40"}),
    json.dumps({**event(40), "per_class": {}}),
    json.dumps({**event(40), "per_class": {"Mass": 1.5}}),
    json.dumps({**event(40), "per_class": ["Mass"]}),
    '{"step": 40, "per_class": {"Mass": NaN}, "overall": 0.5, "chance": 0.5, "judge_accuracy": 0.9}',
    json.dumps({**event(40), "overall": None}),
    json.dumps({**event(40), "judge_accuracy": "high"}),
    "[" * 100_000 + "]" * 100_000,                                               # deeper than the parser goes
]


def test_bad_lines_are_counted_and_skipped_with_a_notice(tmp_path):
    path = tmp_path / "quality.jsonl"
    good = [event(10), {**event(20), "judge_accuracy": None}]
    path.write_text("\n".join([json.dumps(good[0]), *BAD_LINES, "", json.dumps(good[1])]) + "\n")
    events, notice = read_quality(path)
    assert events == good
    assert notice == f"{path}: skipped {len(BAD_LINES)} unreadable line(s) of live quality"


def test_a_missing_or_unreadable_file_is_no_traceback(tmp_path):
    assert read_quality(tmp_path / "absent.jsonl") == ([], None)
    (tmp_path / "folder.jsonl").mkdir()
    events, notice = read_quality(tmp_path / "folder.jsonl")
    assert events == [] and "cannot read the saved live quality" in notice


# ---- the Train tab

@pytest.fixture
def saved_run(tmp_path):
    from core.gan.config import TrainConfig

    run = tmp_path / "run"
    paths = RunPaths(run)
    paths.make()
    TrainConfig(run=str(run), data=str(tmp_path / "cache"), classes=["Mass", "Nodule"]).save(paths.config)
    paths.quality.write_text("".join(json.dumps(event(step, step / 400)) + "\n" for step in (100, 200, 300))
                             + "{torn\n")
    paths.checkpoint(200).write_bytes(b"")
    return paths


def _panel(qtbot, tmp_path):
    from app.train_panel import TrainPanel

    panel = TrainPanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    return panel


def test_reopening_a_run_shows_its_saved_quality_curve(qtbot, tmp_path, saved_run):
    panel = _panel(qtbot, tmp_path)
    panel.run_edit.setText(str(saved_run.root))
    panel.load_run()
    panel.quality.redraw()
    assert [e["step"] for e in panel.quality.events] == [100, 200, 300]
    assert panel.quality.points("Mass") == 3 and "Step 300" in panel.quality.summary.text()
    assert "skipped 1 unreadable line(s) of live quality" in panel.log.toPlainText()


class _Signal:
    def connect(self, slot) -> None:
        pass


class _Runner:
    """What `start` wires up of a JobHandle; the run itself is not started."""

    def __getattr__(self, name):
        return _Signal()


def test_resume_keeps_the_curve_up_to_the_checkpoint_it_continues_from(qtbot, tmp_path, saved_run, monkeypatch):
    monkeypatch.setattr("app.train_panel.start_job", lambda task, config, **kw: _Runner())
    panel = _panel(qtbot, tmp_path)
    panel.run_edit.setText(str(saved_run.root))
    panel.load_run()
    panel.start(resume=True)
    panel.runner = None
    assert [e["step"] for e in panel.quality.events] == [100, 200]
