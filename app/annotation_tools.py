"""Undoable annotation edits: every change goes through a QUndoCommand that calls core's store.

Commands record the image's whole box list (or label cell) before and after, so undo and redo restore
exact states regardless of what else changed. A box whose finding the image's Finding Labels lack can
bring that label with it: both changes are one undo step (a QUndoStack macro). The store autosaves after each change; a failed save
is reported through `AnnotationController.saved(ok, message)` and the store stays dirty.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout

from core.data.annotations import AnnotationError, AnnotationStore, Box, normalise_finding_labels
from core.labels import NIH_LABELS, split_labels


class SetBoxesCommand(QUndoCommand):
    def __init__(self, controller: "AnnotationController", image: str, before, after, text: str):
        super().__init__(text)
        self._controller, self._image = controller, image
        self._before, self._after = tuple(before), tuple(after)

    def redo(self):
        self._controller.apply_boxes(self._image, self._after)

    def undo(self):
        self._controller.apply_boxes(self._image, self._before)


class SetLabelsCommand(QUndoCommand):
    def __init__(self, controller: "AnnotationController", image: str, before: str, after: str):
        super().__init__(f"Finding labels of {image}")
        self._controller, self._image = controller, image
        self._before, self._after = before, after

    def redo(self):
        self._controller.apply_labels(self._image, self._after)

    def undo(self):
        self._controller.apply_labels(self._image, self._before)


class AnnotationController(QObject):
    """Turns the user's intent into undoable edits of one AnnotationStore.

    `boxes_changed(image)` / `labels_changed(image)` after each applied change (also on undo/redo),
    `saved(ok, message)` after each autosave attempt.
    """

    boxes_changed = Signal(str)
    labels_changed = Signal(str)
    saved = Signal(bool, str)

    def __init__(self, store: AnnotationStore, parent=None):
        super().__init__(parent)
        self.store = store
        self.undo_stack = QUndoStack(self)

    # ---- intent (push commands)
    def lacks_label(self, image: str, finding: str) -> bool:
        """True when a box of `finding` on `image` disagrees with the image's Finding Labels."""
        return finding not in split_labels(self.store.finding_labels(image))

    def add_box(self, image: str, rect: QRectF, label: str, add_label: bool = False) -> None:
        """Draw a box; with `add_label`, also add its finding to the image's labels, as one undo step."""
        box = Box(label, round(rect.x(), 2), round(rect.y(), 2), round(rect.width(), 2), round(rect.height(), 2))
        self._push_boxes(image, (*self.store.boxes(image), box), f"Draw {label} box", label if add_label else None)

    def change_box(self, image: str, index: int, box: Box) -> None:
        items = list(self.store.boxes(image))
        items[index] = box
        self._push_boxes(image, items, f"Move/resize {box.label} box")

    def relabel_box(self, image: str, index: int, label: str, add_label: bool = False) -> None:
        items = list(self.store.boxes(image))
        old = items[index]
        if old.label == label:
            return
        items[index] = Box(label, old.x, old.y, old.w, old.h)
        self._push_boxes(image, items, f"Relabel box as {label}", label if add_label else None)

    def delete_box(self, image: str, index: int) -> None:
        items = list(self.store.boxes(image))
        removed = items.pop(index)
        self._push_boxes(image, items, f"Delete {removed.label} box")

    def set_finding_labels(self, image: str, labels: list[str]) -> None:
        after = normalise_finding_labels(image, labels)  # raises AnnotationError before anything changes
        before = self.store.finding_labels(image)
        if after != before:
            self.undo_stack.push(SetLabelsCommand(self, image, before, after))

    def _push_boxes(self, image: str, after, text: str, add_finding: str | None = None) -> None:
        """Push the new box list; with `add_finding` missing from the labels, add it in the same undo step."""
        for box in after:
            box.validated(image)  # refuse a bad edit before it reaches the undo stack
        command = SetBoxesCommand(self, image, self.store.boxes(image), after, text)
        if add_finding is None or not self.lacks_label(image, add_finding):
            self.undo_stack.push(command)
            return
        before = self.store.finding_labels(image)
        kept = [name for name in split_labels(before) if name != "No Finding"]
        cell = normalise_finding_labels(image, [*kept, add_finding])
        self.undo_stack.beginMacro(f"{text}, add {add_finding} to the Finding Labels")
        self.undo_stack.push(command)
        self.undo_stack.push(SetLabelsCommand(self, image, before, cell))
        self.undo_stack.endMacro()

    # ---- application (called by the commands)
    def apply_boxes(self, image: str, boxes) -> None:
        ok = self.store.set_boxes(image, boxes)
        self.boxes_changed.emit(image)
        self._report(ok)

    def apply_labels(self, image: str, cell: str) -> None:
        ok = self.store.set_finding_labels(image, split_labels(cell))
        self.labels_changed.emit(image)
        self._report(ok)

    def _report(self, ok: bool) -> None:
        if ok:
            self.saved.emit(True, f"Saved to {self.store.boxes_path}")
        else:
            self.saved.emit(False, f"Not saved: {self.store.last_error}")


class FindingLabelsDialog(QDialog):
    """Check the labels an image carries; 'No Finding' excludes the others."""

    def __init__(self, image: str, current: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Finding labels of {image}")
        self.list = QListWidget()
        chosen = set(split_labels(current))
        for name in NIH_LABELS:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in chosen else Qt.Unchecked)
            self.list.addItem(item)
        self.error = QLabel("")
        self.error.setObjectName("errorLabel")
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self._image = image
        # Tall enough for all 15 labels: the default height showed about ten and hid the rest.
        frame = 2 * self.list.frameWidth()
        self.list.setMinimumHeight(self.list.sizeHintForRow(0) * self.list.count() + frame + 8)
        self.list.setMinimumWidth(self.list.sizeHintForColumn(0) + frame + 40)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("'No Finding' cannot be combined with findings."))
        layout.addWidget(self.list)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def labels(self) -> list[str]:
        return [self.list.item(r).text() for r in range(self.list.count())
                if self.list.item(r).checkState() == Qt.Checked]

    def _accept(self):
        try:
            normalise_finding_labels(self._image, self.labels())
        except AnnotationError as error:
            self.error.setText(str(error))
            return
        self.accept()
