"""The PySide6 + pyqtgraph front end. Importing it first guards against a PySide6 reference-count bug.

PySide6 6.12.0 on CPython 3.11 drops one reference to `True` on every Python-side `Signal.emit()` and
one to `None` on every `QApplication.processEvents()` (measured: `sys.getrefcount(True)` falls by
exactly 1 per emit). `True` starts near 600 references, so after a few hundred emits (a short
training run's progress reports) the interpreter aborts with "bool_dealloc: deallocating True or
False". CPython 3.12+ makes these singletons immortal, so the bug is harmless there; on older
Pythons we give them the same effective immortality by raising their reference counts once.
"""
from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40  # far more leaked references than any session could produce


def _immortalise_singletons() -> None:
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM


_immortalise_singletons()
