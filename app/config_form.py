"""A form built from a config dataclass: one widget per field, its help text as the tooltip.

Fields with `metadata["form"] is False` are left out, `metadata["choices"]` gives a combo box (showing
`metadata["choice_labels"][choice]` where a choice has one); ints,
floats, bools and strings get a spin box, a float line edit (so 2e-4 stays readable), a check box or a
line edit. `values()` returns the field values; building and validating the dataclass stays in core.
Its spin and combo boxes take the mouse wheel only when focused (`app/wheel_guard.py`).
"""
from __future__ import annotations

from dataclasses import MISSING, Field, fields

from PySide6.QtCore import QLocale
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from app.wheel_guard import install_wheel_guard


def _default(f: Field):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


class ConfigForm(QWidget):
    def __init__(self, config_type, skip: tuple[str, ...] = (), overrides: dict | None = None, parent=None):
        super().__init__(parent)
        install_wheel_guard()   # the app installs it at start; this covers a form used on its own
        self.editors: dict[str, QWidget] = {}
        self._types: dict[str, type] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        # every editor under its label: the form then fits a narrow side panel instead of widening it past
        # its scroll area, and text fields get the panel's whole width (wrapping only the rows that did not
        # fit left a ragged mix of one- and two-line rows, and the augmentation list still cut off)
        layout.setRowWrapPolicy(QFormLayout.WrapAllRows)
        initial = {}
        for f in fields(config_type):
            if f.name in skip or f.metadata.get("form") is False:
                continue
            value = (overrides or {}).get(f.name, _default(f))
            editor = self._editor(value, f.metadata.get("choices"), f.metadata.get("choice_labels", {}))
            editor.setToolTip(f.metadata.get("help", ""))
            self.editors[f.name] = editor
            self._types[f.name] = type(value)
            initial[f.name] = value
            title = f.metadata.get("label") or f.name.replace("_", " ")
            layout.addRow(title[0].upper() + title[1:], editor)
        self.set_values(initial)

    @staticmethod
    def _editor(value, choices, choice_labels: dict) -> QWidget:
        if choices:
            combo = QComboBox()
            for choice in choices:
                combo.addItem(choice_labels.get(choice, str(choice)), choice)
            return combo
        if isinstance(value, bool):
            return QCheckBox()
        if isinstance(value, int):
            return QSpinBox(minimum=0, maximum=10_000_000)
        if isinstance(value, float):
            edit = QLineEdit()
            validator = QDoubleValidator(edit)
            validator.setLocale(QLocale.c())  # "2e-4" and "0.5" whatever the desktop's locale
            edit.setValidator(validator)
            return edit
        return QLineEdit()

    def set_values(self, values: dict) -> None:
        for name, value in values.items():
            editor = self.editors.get(name)
            if isinstance(editor, QComboBox):
                editor.setCurrentIndex(max(0, editor.findData(value)))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QLineEdit):
                editor.setText(f"{value:g}" if isinstance(value, float) else str(value))

    def values(self) -> dict:
        """Field values; a float that does not parse raises ValueError naming the field."""
        out = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QComboBox):
                out[name] = editor.currentData()
            elif isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            elif isinstance(editor, QSpinBox):
                out[name] = editor.value()
            elif self._types[name] is float:
                try:
                    out[name] = float(editor.text())
                except ValueError:
                    raise ValueError(f"{name.replace('_', ' ')}: '{editor.text()}' is not a number") from None
            else:
                out[name] = editor.text()
        return out
