"""Guard against PySide6 6.12.0's leak of references to True/None (see app/__init__.py)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANY_EMITS = """
import app
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication
qt = QApplication([])
class Source(QObject):
    changed = Signal(object)
source = Source()
source.changed.connect(lambda value: None)
for i in range(20000):
    source.changed.emit(i)
    qt.processEvents()
print("survived")
"""


def test_twenty_thousand_emits_and_event_loops_do_not_abort_the_interpreter():
    out = subprocess.run([sys.executable, "-c", MANY_EMITS], cwd=ROOT, capture_output=True, text=True,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "survived"
