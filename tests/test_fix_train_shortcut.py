"""The Start button's tooltip names Ctrl+Return: the shortcut exists and starts a run, once, and not while
a run is going."""
from __future__ import annotations

from PySide6.QtCore import QSettings, Qt

from app.train_panel import TrainPanel


def test_ctrl_return_presses_start_as_its_tooltip_says(qtbot, tmp_path):
    panel = TrainPanel(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(panel)
    started = []
    panel.start = lambda resume: started.append(resume)  # what the button calls; no training here
    with qtbot.waitActive(panel):  # a window shortcut needs the window active
        panel.show()
        panel.activateWindow()
    assert "Ctrl+Return" in panel.start_button.toolTip()

    qtbot.keyClick(panel.run_edit, Qt.Key_Return, Qt.ControlModifier)  # typing in the run folder box
    qtbot.waitUntil(lambda: started == [False], timeout=2000)  # a button's shortcut animates a click (~100 ms)

    panel.start_button.setEnabled(False)  # as while a run is going
    qtbot.keyClick(panel.run_edit, Qt.Key_Return, Qt.ControlModifier)
    qtbot.wait(500)
    assert started == [False]
