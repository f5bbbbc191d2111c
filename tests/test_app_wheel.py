"""The mouse wheel scrolls panels; it changes a spin box or combo box only after the user focused it.

Wheel events are sent through the window system (`QTest.wheelEvent`), so Qt treats them as real ones:
they give focus by the widget's focus policy and travel to the parent when ignored.
"""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QComboBox, QScrollArea, QSpinBox, QVBoxLayout, QWidget

from app.config_form import ConfigForm
from core.gan.config import TrainConfig

DOWN = QPoint(0, -120)   # one notch towards the user


def _wheel_over(widget, qtbot, delta=DOWN) -> None:
    window = widget.window().windowHandle()
    centre = widget.mapTo(widget.window(), widget.rect().center())
    QTest.wheelEvent(window, centre, delta)
    qtbot.wait(20)


@pytest.fixture
def scrolled_form(qtbot):
    """The Train settings form in a short scroll area, as in the Train tab."""
    form = ConfigForm(TrainConfig)
    area = QScrollArea()
    area.setWidget(form)
    area.setWidgetResizable(True)
    host = QWidget()
    QVBoxLayout(host).addWidget(area)
    host.resize(420, 260)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)
    yield form, area
    host.close()   # qtbot holds widgets weakly: the fixture keeps `host` alive until the test ends


def _shown(area: QScrollArea, editor):
    area.ensureWidgetVisible(editor)
    return editor


def test_wheel_over_an_unfocused_precision_combo_scrolls_the_form_instead(scrolled_form, qtbot):
    form, area = scrolled_form
    combo = _shown(area, form.editors["precision"])
    before, scroll_before = combo.currentText(), area.verticalScrollBar().value()
    assert area.verticalScrollBar().maximum() > scroll_before, "the form must be scrollable for this test"
    _wheel_over(combo, qtbot)
    assert combo.currentText() == before
    assert not combo.hasFocus()
    assert area.verticalScrollBar().value() > scroll_before, "the ignored wheel reaches the scroll area"


def test_wheel_over_an_unfocused_spin_box_leaves_it_alone(scrolled_form, qtbot):
    form, area = scrolled_form
    spin = _shown(area, next(editor for editor in form.editors.values() if isinstance(editor, QSpinBox)))
    before = spin.value()
    _wheel_over(spin, qtbot, QPoint(0, 120))
    assert spin.value() == before
    assert spin.focusPolicy() == Qt.StrongFocus


def test_a_focused_combo_still_takes_the_wheel(scrolled_form, qtbot):
    form, area = scrolled_form
    combo = _shown(area, form.editors["precision"])
    combo.setCurrentIndex(0)
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus)
    _wheel_over(combo, qtbot)
    assert combo.currentIndex() == 1


def test_the_train_tab_precision_combo_ignores_a_passing_wheel(qtbot, tmp_path):
    from app.main_window import MainWindow

    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.train)
    window.train.advanced.setChecked(True)   # precision sits under the collapsed Advanced settings
    qtbot.waitExposed(window)
    combos = [c for c in window.train.findChildren(QComboBox) if c.findData("mixed_float16") >= 0]
    assert combos, "the Train tab offers a precision choice"
    combo = combos[0]
    scroll = combo.parentWidget()
    while scroll is not None and not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    if scroll is not None:
        scroll.ensureWidgetVisible(combo)
    qtbot.waitUntil(combo.isVisible)
    assert not combo.hasFocus()
    before = combo.currentText()
    for _ in range(3):
        _wheel_over(combo, qtbot)
    assert combo.currentText() == before
