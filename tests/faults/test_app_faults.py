"""Issue 11 #1 in the window: a second window (another process) on the same annotations gets a dialog
saying who holds them and edits nothing; a run folder in use by another training is a dialog naming it."""
from __future__ import annotations

import os
import shutil

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from tests.faults.test_locks import HOLD, HOLD_STORE

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the locks are POSIX flock")


def test_a_second_window_on_the_same_annotations_says_who_holds_them_and_edits_nothing(
        qtbot, holder, phantom_root, tmp_path, monkeypatch):
    from app.main_window import MainWindow

    root = shutil.copytree(phantom_root, tmp_path / "nih")
    process = holder(HOLD_STORE, root)  # the first window: another process writing these annotations
    written = (root / ".cxr-workbench" / "annotations.csv").read_bytes()
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    errors = []
    monkeypatch.setattr(win, "show_error", errors.append)
    win.open_dataset(str(root))
    qtbot.waitUntil(lambda: win.index is not None, timeout=20000)
    assert len(errors) == 1 and f"is in use by process {process.pid}" in errors[0] and "read-only" in errors[0]
    assert "--" not in errors[0]
    assert win.controller is None, "a second writer of the same annotations"
    assert not win.browse.draw_button.isEnabled() and not win.export_csv.isEnabled()
    assert len(win.index.boxes) > 0, "the saved boxes are still shown"
    assert (root / ".cxr-workbench" / "annotations.csv").read_bytes() == written


def test_starting_training_on_a_run_folder_in_use_is_a_dialog_naming_it(qtbot, holder, demo_root, tmp_path,
                                                                        monkeypatch):
    from app.train_panel import TrainPanel

    run = tmp_path / "run"
    process = holder(HOLD, run)  # another `train` holding the run folder
    panel = TrainPanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    panel.set_dataset(demo_root)
    panel.run_edit.setText(str(run))
    panel.form.set_values({"size": 32, "batch": 8, "steps": 4, "channels": 8, "threads": 1})
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append((title, text)))
    panel.start(resume=False)
    qtbot.waitUntil(lambda: panel.runner is None, timeout=60000)
    assert len(shown) == 1 and shown[0][0] == "Training", shown
    assert f"{run} is in use by process {process.pid}" in shown[0][1] and "--" not in shown[0][1]
    assert not run.exists() or not any(run.iterdir()), "the refused run wrote into the folder"
