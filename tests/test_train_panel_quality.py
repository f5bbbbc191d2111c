"""The Train tab shows live per-class quality: the training job's quality events reach its plot."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from app.quality_plot import QualityPlot, summary_text
from app.train_panel import TrainPanel
from tests.test_app_train import TINY


def _event(step, per_class, judge=0.9):
    return {"step": step, "per_class": per_class, "overall": sum(per_class.values()) / len(per_class),
            "chance": round(1 / len(per_class), 4), "judge_accuracy": judge}


def test_the_plot_draws_a_line_per_class_with_the_judge_as_ceiling_and_says_where_the_model_stands(qtbot):
    plot = QualityPlot()
    qtbot.addWidget(plot)
    assert "appears here during training" in plot.summary.text()
    plot.add(_event(50, {"Mass": 0.125, "Nodule": 0.25}))
    plot.add(_event(100, {"Mass": 0.875, "Nodule": 1.0}))
    plot.redraw()
    assert plot.points("Mass") == 2 and plot.points("Nodule") == 2
    assert plot.ceiling.isVisible() and plot.ceiling.value() == pytest.approx(0.9)
    assert plot.floor.value() == pytest.approx(0.5)
    assert "Mass" in plot.key.text() and "chance" in plot.key.text()   # the key is beside the plot, not on it
    assert "Step 100: 94%" in plot.summary.text() and "good enough" in plot.summary.text()
    assert "not learned" in summary_text(_event(50, {"Mass": 0.0, "Nodule": 0.5}))
    plot.clear()
    assert plot.points("Mass") == 0 and "appears here" in plot.summary.text() and plot.key.isHidden()


@pytest.mark.slow
def test_quality_events_of_a_real_training_run_reach_the_train_plot(qtbot, tmp_path, demo_root, monkeypatch):
    """The whole path: trainer grid -> run_train's judge -> job event -> JobHandle.quality -> plot.
    In process (not the usual child) so that the judge can be made small for the test."""
    from app import workers
    from core.data.cache import PrepareConfig, prepare
    from core.evaluation import live_quality
    from core.evaluation.classifier import ClassifierConfig

    monkeypatch.setattr(live_quality, "JUDGE", ClassifierConfig(steps=30))
    monkeypatch.setattr("app.train_panel.start_job",
                        lambda task, config, **kw: workers.start_job(task, config, in_process=False, **kw))
    cache = tmp_path / "cache32"
    prepare(PrepareConfig(data=str(demo_root), out=str(cache), size=32))
    panel = TrainPanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    panel.run_edit.setText(str(tmp_path / "run"))
    panel.form.set_values({**TINY, "sample_every": 4, "steps": 100_000})
    panel.cache_edit.setText(str(cache))
    panel.start(resume=False)
    try:
        qtbot.waitUntil(lambda: panel.quality.points("Mass") >= 2, timeout=300_000)
    finally:
        panel.stop_and_wait()
    assert set(panel.quality.curves) == set(panel.build_config(resume=False).classes)
    assert "of the samples show their class" in panel.quality.summary.text()
    assert "quality at step" in panel.log.toPlainText()
