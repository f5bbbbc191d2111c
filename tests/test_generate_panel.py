"""The Generate tab defaults to the recommended counts and recipe, shows the run's latest verdict before
export and warns (without blocking) when it is not "helps" or no bench was run; the manifest records it."""
from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import QSettings

from app.generate_panel import GeneratePanel
from tests.test_app_generate import trained_run  # noqa: F401 - the module's trained run fixture
from tests.test_app_verdict import write_bench


@pytest.fixture
def panel(qtbot, tmp_path, monkeypatch):
    failures = []
    monkeypatch.setattr("app.generate_panel.QMessageBox.warning", lambda *args: failures.append(args[2]))
    widget = GeneratePanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    widget.failures = failures
    qtbot.addWidget(widget)
    return widget


def _open(panel, run) -> None:
    panel.run_edit.setText(str(run))
    panel.load_run()
    assert not panel.failures and panel.generator is not None


def test_without_a_bench_it_recommends_top_up_counts_and_warns_but_lets_you_export(panel, trained_run):
    _open(panel, trained_run)
    assert panel.recipe.currentText() == "recommended" and panel.counts_recommended.isChecked()
    assert not panel.counts.cellWidget(0, 1).isEnabled() and not panel.set_all.isEnabled()
    assert "No augmentation bench yet" in panel.counts_note.text()
    assert panel.counts.cellWidget(0, 1).text() == "top-up"             # no made-up number
    assert panel.banner.key == "not_run" and "Not tested yet" in panel.banner.plain_text()
    assert "(Evaluate tab)" in panel.banner.plain_text()                # where the bench is run
    assert "No augmentation bench" in panel.export_warning()
    assert panel.export_button.isEnabled()                               # a warning, not a block
    panel.counts_by_hand.setChecked(True)
    assert panel.counts.cellWidget(0, 1).isEnabled() and panel.set_all.isEnabled()
    assert panel.counts_note.text() == "" and "total 700 images" in panel.total.text()


@pytest.mark.parametrize("verdict, warned", [("hurts", True), ("no_better", True), ("helps", False)])
def test_the_latest_verdict_and_its_recommended_counts_are_shown_before_export(panel, trained_run, tmp_path,
                                                                               verdict, warned):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    report = write_bench(run, verdict, gain=-0.2 if verdict == "hurts" else 0.05)
    _open(panel, run)
    assert panel.banner.key == verdict
    assert bool(panel.export_warning()) == warned
    if warned:
        assert report["verdict"]["label"] in panel.export_warning()
    recommended = report["recommended"]["counts"]
    shown = {panel.counts.item(r, 0).text(): panel.counts.cellWidget(r, 1).value()
             for r in range(panel.counts.rowCount())}
    assert shown == {name: recommended.get(name, 0) for name in shown}
    assert "From the augmentation bench" in panel.counts_note.text()
    assert f"total {sum(recommended.values()):,} images" in panel.total.text()


def test_an_export_without_a_bench_says_so_and_its_manifest_records_it(panel, trained_run, tmp_path, qtbot):
    _open(panel, trained_run)
    panel.counts_by_hand.setChecked(True)
    panel.recipe.setCurrentText("none")
    for row in range(panel.counts.rowCount()):
        panel.counts.cellWidget(row, 1).setValue(2 if row == 0 else 0)
    panel.out_edit.setText(str(tmp_path / "synthetic"))
    panel.export()
    qtbot.waitUntil(lambda: panel.runner is None and "Exported" in panel.eta.text() or bool(panel.failures),
                    timeout=300_000)
    assert not panel.failures
    assert "No augmentation bench" in panel.eta.text()
    manifest = json.loads((tmp_path / "synthetic" / "manifest.json").read_text())
    assert manifest["augmentation_verdict"]["verdict"] == "not_run" and manifest["recipe"]["name"] == "none"
