"""Guard against a PySide6 release that leaks references to True/None on every emit.

PySide6 6.12.0 on CPython 3.11 drops one reference to `True` per `Signal.emit()` and one to `None`
per `processEvents()`; after a few hundred emits the interpreter aborts ("deallocating True").
pyproject.toml excludes that release; this test catches the next one that does the same.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANY_EMITS = """
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
