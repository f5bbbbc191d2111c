"""The Generate tab: open a trained run, preview a seeded grid, export in NIH layout (each in a child process)."""
from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import QSettings

from app.generate_panel import GeneratePanel



@pytest.fixture(scope="module")
def trained_run(demo_root, tmp_path_factory):
    from core.data.cache import PrepareConfig, prepare
    from core.gan.config import TrainConfig
    from core.gan.trainer import train

    base = tmp_path_factory.mktemp("generate")
    prepare(PrepareConfig(data=str(demo_root), out=str(base / "cache"), size=32))
    config = TrainConfig(run=str(base / "run"), data=str(base / "cache"), size=32, batch=8, steps=2, guide_steps=4, channels=8,
                         latent_dim=16, log_every=1, augment="", checkpoint_every=100)
    train(config)
    return base / "run"


def test_open_preview_and_export_a_trained_run(qtbot, tmp_path, trained_run, monkeypatch):
    failures = []
    monkeypatch.setattr("app.generate_panel.QMessageBox.warning", lambda *args: failures.append(args[2]))
    panel = GeneratePanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    panel.run_edit.setText(str(trained_run))
    panel.load_run()
    qtbot.waitUntil(lambda: panel.runner is None and panel.generator is not None or bool(failures), timeout=300000)
    assert not failures
    assert panel.counts.rowCount() == 7
    assert "32x32 px" in panel.model_info.text()

    panel.preview()
    qtbot.waitUntil(lambda: panel.runner is None and panel._grid is not None or bool(failures), timeout=300000)
    assert not failures and panel._grid.height() == 7 * 32

    panel.counts_by_hand.setChecked(True)
    panel.recipe.setCurrentText("none")
    for row in range(panel.counts.rowCount()):
        panel.counts.cellWidget(row, 1).setValue(2 if row < 2 else 0)
    panel.out_edit.setText(str(tmp_path / "synthetic"))
    panel.export()
    qtbot.waitUntil(lambda: panel.runner is None and "Exported" in panel.eta.text() or bool(failures), timeout=300000)
    assert not failures
    with open(tmp_path / "synthetic" / "Data_Entry_2017.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert len(rows) == 4
    assert len(list((tmp_path / "synthetic" / "images").glob("*.png"))) == 4


def test_a_failed_open_run_forgets_the_previous_run_and_disables_export(qtbot, tmp_path, trained_run, monkeypatch):
    failures = []
    monkeypatch.setattr("app.generate_panel.QMessageBox.warning", lambda *args: failures.append(args[2]))
    panel = GeneratePanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    panel.run_edit.setText(str(trained_run))
    panel.load_run()
    assert panel.generator is not None and panel.export_button.isEnabled()
    assert "trained to step 2" in panel.model_info.text()
    panel.counts_by_hand.setChecked(True)
    panel.set_all.setValue(7)
    panel._set_all()
    assert set(panel.chosen_counts().values()) == {7} and "total 49 images" in panel.total.text()
    (tmp_path / "broken").mkdir()
    panel.run_edit.setText(str(tmp_path / "broken"))
    panel.load_run()
    assert failures and "broken" in failures[-1] and "--" not in failures[-1]
    assert panel.generator is None and not panel.export_button.isEnabled()
    assert not panel.preview_button.isEnabled() and panel.counts.rowCount() == 0
