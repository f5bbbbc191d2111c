"""The Evaluate tab runs core's evaluation in a worker and shows its verdict, numbers and plots."""
from __future__ import annotations

import pytest

from app.evaluate_panel import EvaluatePanel
from core.labels import DEFAULT_CLASSES
from tests.test_generate import write_toy_run


@pytest.fixture
def panel(qtbot):
    widget = EvaluatePanel()
    qtbot.addWidget(widget)
    return widget


def _wait_idle(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=900_000)   # a busy machine is slow


@pytest.mark.slow
def test_evaluating_a_run_shows_the_numbers_and_plots_and_they_come_back_on_reopening(qtbot, panel, demo_root,
                                                                                       tmp_path):
    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    panel.set_run(run)
    panel.set_dataset(demo_root)
    panel.n_spin.setValue(4)
    panel.steps_spin.setValue(10)
    with qtbot.waitSignal(panel.report_ready, timeout=900_000):   # as _wait_idle: a busy machine is slow
        panel.evaluate_button.click()
        assert not panel.evaluate_button.isEnabled() and panel.stop_button.isEnabled()
    _wait_idle(qtbot, panel)
    assert panel.table.rowCount() == len(DEFAULT_CLASSES) + 1
    assert panel.table.item(len(DEFAULT_CLASSES), 0).text() == "overall"
    assert panel.plots["confusion"].has_image() and panel.plots["real_vs_synthetic"].has_image()
    assert panel.pages["real_vs_synthetic"].is_filled() and panel.pages["nearest"].is_filled()
    assert panel.plots["nearest"].has_image()
    assert "judge recognises" in panel.summary.text() and "per class" in panel.summary.text()
    headers = [panel.table.horizontalHeaderItem(c) for c in range(panel.table.columnCount())]
    assert all(h.toolTip() for h in headers), [h.text() for h in headers if not h.toolTip()]
    assert panel.evaluate_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.open_report_button.isEnabled() and panel.banner.key == "not_run"

    reopened = EvaluatePanel()
    qtbot.addWidget(reopened)
    reopened.set_run(run)
    assert reopened.table.rowCount() == len(DEFAULT_CLASSES) + 1


@pytest.mark.slow
def test_the_augmentation_bench_fills_its_table_with_spread_and_gain(qtbot, panel, tmp_path, monkeypatch):
    from dataclasses import replace

    import app.evaluate_panel
    from tests.toy_sources import imbalanced_toy_data, write_toy_cache

    # The three arms that the verdict needs: the share sweep and the pretrain arm are more columns of the
    # same table, each another classifier per seed, and the recommended recipe trains a screening judge of
    # 800 steps first (tests/test_augment_bench.py and tests/test_export.py cover both in core).
    start_job = app.evaluate_panel.start_job
    monkeypatch.setattr(app.evaluate_panel, "start_job", lambda task, config: start_job(
        task, replace(config, shares=[], pretrain=False, recipe="none") if task == "augment-bench" else config))
    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    panel.set_run(run)
    panel.set_dataset(write_toy_cache(tmp_path / "cache", imbalanced_toy_data(
        train_counts=(20,) + (10,) * 6, test_per_class=10, classes=DEFAULT_CLASSES)))
    panel.seeds_spin.setValue(2)
    panel.steps_spin.setValue(10)
    panel.augment_button.click()
    _wait_idle(qtbot, panel)
    assert panel.status.text() == "Augmentation bench: done."
    assert panel.augment_table.rowCount() == len(DEFAULT_CLASSES) + 4
    columns = [panel.augment_table.horizontalHeaderItem(c).text() for c in range(panel.augment_table.columnCount())]
    assert columns[1:] == ["real", "duplicate_control", "synthetic"], columns
    assert "+-" in panel.augment_table.item(0, 1).text() and "held-out real images" in panel.augment_summary.text()
    assert panel.plots["bench_gain"].has_image() and panel.plots["bench_recall"].has_image()
    assert panel.banner.key in ("helps", "no_better", "hurts") and panel.pages["bench"].is_filled()


def test_a_folder_that_is_not_a_run_is_reported_in_one_line(qtbot, panel, tmp_path):
    panel.set_run(tmp_path / "nothing here")
    with qtbot.waitSignal(panel.error, timeout=300_000) as blocker:
        panel.evaluate_button.click()
    _wait_idle(qtbot, panel)
    assert "nothing here" in blocker.args[0] and "\n" not in blocker.args[0]
    assert panel.status.text() == blocker.args[0]


def test_stop_ends_a_running_evaluation(qtbot, panel, demo_root, tmp_path):
    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    panel.set_run(run)
    panel.set_dataset(demo_root)
    panel.steps_spin.setValue(100_000)
    panel.evaluate_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=300_000)
    assert "ETA" in panel.eta.text()
    panel.stop_button.click()
    _wait_idle(qtbot, panel)
    assert panel.status.text().endswith("stopped; no report was written.")
    assert not (run / "evaluation" / "report.json").exists()
