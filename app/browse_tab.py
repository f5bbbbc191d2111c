"""The Browse & annotate tab: browser on the left, viewer with its toolbar and metadata on the right."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSplitter, QToolButton, QVBoxLayout, QWidget)

from app.annotation_tools import AnnotationController, FindingLabelsDialog
from app.dataset_panel import DatasetPanel
from app.image_viewer import ImageViewer, MetadataPanel
from core.data.annotations import BOX_LABELS, AnnotationError, boxes_from_frame
from core.errors import UserError
from core.data.images import load_image


class BrowseTab(QWidget):
    """Owns the selection; edits go through the AnnotationController (undo stack + autosave)."""

    status = Signal(str, int)   # message, milliseconds (0 = until replaced)
    error = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.index = None
        self.controller: AnnotationController | None = None
        self.row: int | None = None
        self._readonly_boxes: dict = {}
        self.panel = DatasetPanel()
        self.viewer = ImageViewer()
        self.metadata = MetadataPanel()
        self.metadata.setObjectName("metadata")

        self.draw_button = self._tool("Draw box", "Drag on the image to draw a box (D)", checkable=True)
        self.draw_button.toggled.connect(self.viewer.set_draw_mode)
        self.finding = QComboBox()
        self.finding.addItems(BOX_LABELS)
        self.finding.setToolTip("Finding of new boxes; with a box selected, changes that box's finding")
        self.finding.activated.connect(self._relabel_selected)
        self.delete_button = self._tool("Delete box", "Delete the selected box (Delete)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.labels_button = self._tool("Edit labels…", "Edit the image's Finding Labels (Ctrl+L)")
        self.labels_button.clicked.connect(self.edit_finding_labels)
        self.boxes_button = self._tool("Boxes", "Show or hide boxes (B)", checkable=True)
        self.boxes_button.setChecked(True)
        self.boxes_button.toggled.connect(self.viewer.set_boxes_visible)
        self.invert_button = self._tool("Invert", "Invert grey levels (I)", checkable=True)
        self.invert_button.toggled.connect(self.viewer.set_inverted)
        fit = self._tool("Fit", "Fit the image to the window (F)")
        fit.clicked.connect(self.viewer.fit)
        levels = self._tool("Reset levels", "Full grey range 0-255 (R)")
        levels.clicked.connect(self.viewer.reset_levels)
        self.demo_banner = QLabel()
        self.demo_banner.setObjectName("demoBanner")
        self.demo_banner.setWordWrap(True)
        self.demo_banner.hide()

        # Two rows (annotation, then view): in one row their width set the viewer's minimum and
        # squeezed the table's View and Boxes columns behind a scroll bar in a 1500 px window.
        viewer_side = QWidget()
        viewer_layout = QVBoxLayout(viewer_side)
        viewer_layout.setContentsMargins(0, 0, 0, 0)
        for group in ((self.draw_button, QLabel("Finding:"), self.finding, self.delete_button, self.labels_button),
                      (self.boxes_button, self.invert_button, fit, levels)):
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            for widget in group:
                row.addWidget(widget)
            row.addStretch(1)
            viewer_layout.addLayout(row)
        viewer_split = QSplitter(Qt.Vertical)
        viewer_split.addWidget(self.viewer)
        viewer_split.addWidget(self.metadata)
        viewer_split.setStretchFactor(0, 5)
        viewer_split.setStretchFactor(1, 1)
        viewer_layout.addWidget(viewer_split, 1)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.panel)
        self.splitter.addWidget(viewer_side)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 5)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.demo_banner)
        layout.addWidget(self.splitter, 1)

        self.panel.image_selected.connect(self.show_row)
        self.viewer.box_drawn.connect(self._box_drawn)
        self.viewer.box_changed.connect(self._box_changed)
        self.viewer.box_selected.connect(self._box_selected)

    def _tool(self, text: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton(text=text, toolTip=tip, checkable=checkable)
        button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        return button

    # ---- dataset
    def set_dataset(self, index, controller: AnnotationController | None, demo_note: str = "") -> None:
        self.index = index
        self.controller = controller
        self.row = None
        self.demo_banner.setText(demo_note)
        self.demo_banner.setVisible(bool(demo_note))
        editable = controller is not None
        for widget in (self.draw_button, self.finding, self.delete_button, self.labels_button):
            widget.setEnabled(editable)
        self._readonly_boxes = {} if editable else boxes_from_frame(index.boxes)
        if controller is not None:
            controller.boxes_changed.connect(self._boxes_changed)
            controller.labels_changed.connect(self._labels_changed)
        self.panel.set_index(index)
        if not len(self.panel.model.rows):
            self.viewer.set_image(None, "No images in this dataset")

    @property
    def image(self) -> str | None:
        return None if self.row is None else str(self.index.table["image"].iat[self.row])

    def show_row(self, row: int) -> None:
        self.row = row
        record = self.index.table.iloc[row].to_dict()
        self.metadata.show_row(record)
        path = record.get("path") or ""
        if not path:
            self.viewer.set_image(None, f"{record['image']}: file not found in the dataset folder")
        else:
            try:
                self.viewer.set_image(load_image(path))
            except UserError as error:
                self.viewer.set_image(None, str(error))
                self.status.emit(str(error), 0)
        self.viewer.selected = -1
        self._refresh_boxes()

    def _refresh_boxes(self) -> None:
        if self.row is None:
            return
        if self.controller is not None:
            boxes = self.controller.store.boxes(self.image)
        else:
            boxes = self._readonly_boxes.get(self.image, ())
        self.viewer.set_boxes(boxes, editable=self.controller is not None)

    # ---- edits
    def _box_drawn(self, rect: QRectF) -> None:
        self._edit(lambda: self.controller.add_box(self.image, rect, self.finding.currentText()))

    def _box_changed(self, index: int, box) -> None:
        self._edit(lambda: self.controller.change_box(self.image, index, box))

    def _box_selected(self, index: int) -> None:
        if index >= 0 and index < len(self.viewer.items):
            self.finding.setCurrentText(self.viewer.items[index].label)

    def _relabel_selected(self, *_):
        if self.viewer.selected >= 0:
            index = self.viewer.selected
            self._edit(lambda: self.controller.relabel_box(self.image, index, self.finding.currentText()))

    def delete_selected(self) -> None:
        if self.viewer.selected >= 0 and self.controller is not None:
            index = self.viewer.selected
            self.viewer.selected = -1
            self._edit(lambda: self.controller.delete_box(self.image, index))

    def edit_finding_labels(self) -> None:
        if self.controller is None or self.image is None:
            return
        dialog = FindingLabelsDialog(self.image, self.controller.store.finding_labels(self.image), self)
        if dialog.exec():
            self._edit(lambda: self.controller.set_finding_labels(self.image, dialog.labels()))

    def _edit(self, action) -> None:
        if self.controller is None or self.image is None:
            return
        try:
            action()
        except AnnotationError as error:
            self.error.emit(str(error))
            self._refresh_boxes()

    def _boxes_changed(self, image: str) -> None:
        self.controller.store.apply_to(self.index, images=())
        self.panel.boxes_changed()
        if image == self.image:
            self.metadata.values["n_boxes"].setText(str(len(self.controller.store.boxes(image))))
            self._refresh_boxes()

    def _labels_changed(self, image: str) -> None:
        self.controller.store.apply_to(self.index, images=[image])
        rows = np.flatnonzero(self.index.table["image"].to_numpy() == image)
        self.panel.model.refresh_text(self.index.table, rows)
        self.panel.apply_filters()  # label counts and label filters follow the edit
        if image == self.image:
            self.metadata.values["finding_labels"].setText(self.controller.store.finding_labels(image))
