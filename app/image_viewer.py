"""The image viewer: full-resolution image with window/level, zoom/pan, invert, fit, and editable boxes.

pyqtgraph's `ImageView` gives the histogram/LUT (drag the levels to window the image); the window
(width W and centre L, in the 0-255 grey values of the file) is reported by `window_changed` and can
be set from `WINDOW_PRESETS`. Boxes are
`RectROI`s in image pixel coordinates (BBox_List convention); moving or resizing one, drawing a new
one (draw mode: drag on the image) or deleting the selected one is reported as a signal; the window
turns it into an undoable edit. The viewer itself never changes the annotation store.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsRectItem, QGridLayout, QLabel, QVBoxLayout, QWidget

from app.theme import colour_of
from core.data.annotations import Box

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

# (centre, width) in 8-bit grey values. A radiograph has no Hounsfield units, so these are not CT's
# windows: each stretches the grey range where that anatomy lies on a typical 8-bit chest film (lung
# fields dark, mediastinum and heart mid-to-bright, bone brightest); the readout shows what is applied.
WINDOW_PRESETS: dict[str, tuple[int, int]] = {
    "Lung": (80, 160),          # 0-160: lung markings stretched, everything denser turns white
    "Mediastinum": (165, 130),  # 100-230: heart, mediastinum and through-heart detail
    "Bone": (205, 100),         # 155-255: ribs, clavicles, spine
}
FULL_RANGE = (127.5, 255.0)
GREY = {"mode": "rgb", "ticks": [(0.0, (0, 0, 0, 255)), (1.0, (255, 255, 255, 255))]}
INVERTED = {"mode": "rgb", "ticks": [(0.0, (255, 255, 255, 255)), (1.0, (0, 0, 0, 255))]}


class DrawingViewBox(pg.ViewBox):
    """A ViewBox that, in draw mode, turns a left-button drag into `box_drawn(rect)` instead of a pan."""

    box_drawn = Signal(QRectF)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.draw_mode = False
        self.shift_held = False   # at the end of the last drawing drag: the user wants to keep drawing
        self._rubber = QGraphicsRectItem()
        self._rubber.setPen(pg.mkPen("#00e5ff", width=2, style=Qt.DashLine, cosmetic=True))
        self._rubber.setVisible(False)
        self.addItem(self._rubber, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        if not self.draw_mode or ev.button() != Qt.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        start = self.mapSceneToView(ev.buttonDownScenePos())
        end = self.mapSceneToView(ev.scenePos())
        rect = QRectF(start, end).normalized()
        if ev.isFinish():
            self._rubber.setVisible(False)
            self.shift_held = bool(ev.modifiers() & Qt.ShiftModifier)
            if rect.width() >= 2 and rect.height() >= 2:
                self.box_drawn.emit(rect)
            return
        self._rubber.setRect(rect)
        self._rubber.setVisible(True)


class BoxItem(pg.RectROI):
    """One editable box with its label drawn at its top-left corner."""

    def __init__(self, index: int, box: Box, editable: bool):
        colour = colour_of(box.label)
        super().__init__([box.x, box.y], [box.w, box.h], pen=pg.mkPen(colour, width=2),
                         hoverPen=pg.mkPen(colour, width=3), movable=editable, resizable=editable,
                         rotatable=False)
        self.index = index
        self.label = box.label
        if editable:
            self.addScaleHandle([0, 0], [1, 1])
        else:
            for handle in self.getHandles():
                self.removeHandle(handle)
        self.setAcceptedMouseButtons(Qt.LeftButton)
        self.text = pg.TextItem(box.label, color=colour, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 150))
        self.text.setParentItem(self)

    def set_selected(self, selected: bool) -> None:
        colour = QColor(colour_of(self.label))
        self.setPen(pg.mkPen(colour, width=4 if selected else 2, style=Qt.SolidLine if not selected else Qt.DashLine))

    def to_box(self) -> Box:
        pos, size = self.pos(), self.size()
        x, y = pos.x(), pos.y()
        w, h = size.x(), size.y()
        return Box(self.label, round(min(x, x + w), 2), round(min(y, y + h), 2), round(abs(w), 2), round(abs(h), 2))


class ImageViewer(QWidget):
    """Shows one image and its boxes. Signals carry the user's intent in image pixel coordinates."""

    box_drawn = Signal(QRectF)
    box_changed = Signal(int, object)     # index, Box with the new geometry
    box_selected = Signal(int)            # -1 when none
    window_changed = Signal(float, float)  # centre, width of the grey window

    def __init__(self, parent=None):
        super().__init__(parent)
        self._shape: tuple[int, int] | None = None
        self._window = FULL_RANGE
        self.view_box = DrawingViewBox(lockAspect=True, invertY=True)
        self.image_view = pg.ImageView(view=self.view_box)
        self.image_view.ui.roiBtn.hide()
        self.image_view.ui.menuBtn.hide()
        self.image_view.ui.histogram.setMinimumWidth(110)
        self.view_box.box_drawn.connect(self.box_drawn)
        self.view_box.setMenuEnabled(False)
        histogram = self.image_view.ui.histogram
        histogram.sigLevelsChanged.connect(self._levels_changed)
        histogram.sigLevelChangeFinished.connect(self._levels_changed)
        self.synthetic_mark = QLabel("SYNTHETIC image: made by a generative model", self.image_view.ui.graphicsView)
        self.synthetic_mark.setObjectName("syntheticMark")
        self.synthetic_mark.move(8, 8)
        self.synthetic_mark.hide()
        # In the image's corner, where radiology viewers show it; set by the tab (it names presets).
        self.window_readout = QLabel(self.image_view.ui.graphicsView)
        self.window_readout.setObjectName("windowReadout")
        self.window_readout.setToolTip("Grey window applied to the image: width W and centre L, in the file's "
                                       "0-255 grey values. Drag the levels on the histogram to change it.")
        self.image_view.ui.graphicsView.installEventFilter(self)
        # Centred on the widget, not placed in image coordinates: with no image the view keeps the last
        # image's range, and a note at (0, 0) showed half cut off in a corner.
        self.note = QLabel("", self.image_view.ui.graphicsView)
        self.note.setObjectName("viewerNote")
        self.note.hide()
        self.items: list[BoxItem] = []
        self.selected = -1
        self.show_boxes = True
        self.inverted = False
        self._boxes: tuple[Box, ...] = ()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_view)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Resize:   # keep the readout in the bottom-left corner, the note centred
            self._place_readout()
            self._place_note()
        return False

    def set_readout(self, text: str) -> None:
        self.window_readout.setText(text)
        self._place_readout()

    def _place_readout(self) -> None:
        self.window_readout.adjustSize()
        area = self.image_view.ui.graphicsView.rect()
        self.window_readout.move(8, area.height() - self.window_readout.height() - 8)

    def _place_note(self) -> None:
        self.note.adjustSize()
        area = self.image_view.ui.graphicsView.rect()
        self.note.move((area.width() - self.note.width()) // 2, (area.height() - self.note.height()) // 2)

    # ---- image
    def set_image(self, pixels: np.ndarray | None, message: str = "") -> None:
        """Show `pixels` (uint8 H x W) keeping the zoom when the size is unchanged; None shows `message`.
        The previous image's boxes go first (they would count in the auto-range); `set_boxes` follows."""
        self._remove_box_items()
        if pixels is None:
            self.image_view.clear()
            self._shape = None
            self.note.setText(message)
            self.note.setVisible(bool(message))
            self._place_note()
            return
        self.note.setVisible(False)
        same_size = self._shape == pixels.shape
        self._shape = pixels.shape
        centre, width = self._window   # the next image keeps the window the user chose
        self.image_view.setImage(pixels, autoRange=not same_size, autoLevels=False,
                                 levels=(centre - width / 2, centre + width / 2))
        self._levels_changed()

    def fit(self) -> None:
        self.view_box.autoRange(padding=0.02)

    def set_inverted(self, inverted: bool) -> None:
        self.inverted = inverted
        self.image_view.ui.histogram.gradient.restoreState(INVERTED if inverted else GREY)

    def reset_levels(self) -> None:
        self.set_window(*FULL_RANGE)

    def window(self) -> tuple[float, float]:
        """The grey window as (centre, width)."""
        return self._window

    def set_window(self, centre: float, width: float) -> None:
        self._window = (float(centre), float(width))
        if self._shape is not None:
            self.image_view.setLevels(centre - width / 2, centre + width / 2)
        self.window_changed.emit(*self._window)

    def apply_preset(self, name: str) -> None:
        self.set_window(*WINDOW_PRESETS[name])

    def _levels_changed(self, *_) -> None:
        """The histogram's levels moved (the user dragged them, or an image was shown)."""
        if self._shape is None:
            return
        low, high = self.image_view.ui.histogram.getLevels()
        self._window = ((low + high) / 2, high - low)
        self.window_changed.emit(*self._window)

    def set_synthetic(self, synthetic: bool) -> None:
        """Mark every image shown as synthetic (an export folder is open)."""
        self.synthetic_mark.adjustSize()
        self.synthetic_mark.setVisible(synthetic)

    # ---- boxes
    def _remove_box_items(self) -> None:
        for item in self.items:
            self.view_box.removeItem(item)
        self.items = []

    def set_boxes(self, boxes: tuple[Box, ...], editable: bool = True) -> None:
        self._remove_box_items()
        self._boxes = tuple(boxes)
        for index, box in enumerate(self._boxes):
            item = BoxItem(index, box, editable)
            item.setVisible(self.show_boxes)
            item.sigRegionChangeFinished.connect(self._item_moved)
            item.sigClicked.connect(lambda roi, _ev: self.select(roi.index))
            item.sigRegionChangeStarted.connect(lambda roi: self.select(roi.index))
            self.view_box.addItem(item)
            self.items.append(item)
        self.select(self.selected if self.selected < len(self.items) else -1)

    def set_boxes_visible(self, visible: bool) -> None:
        self.show_boxes = visible
        for item in self.items:
            item.setVisible(visible)

    def select(self, index: int) -> None:
        self.selected = index
        for item in self.items:
            item.set_selected(item.index == index)
        self.box_selected.emit(index)

    def _item_moved(self, item: BoxItem) -> None:
        box = item.to_box()
        if box.w > 0 and box.h > 0 and box != self._boxes[item.index]:
            self.box_changed.emit(item.index, box)

    def set_draw_mode(self, on: bool) -> None:
        self.view_box.draw_mode = on
        self.image_view.setCursor(Qt.CrossCursor if on else Qt.ArrowCursor)


class MetadataPanel(QWidget):
    """The selected row's metadata as a small form."""

    FIELDS = (("image", "Image"), ("finding_labels", "Finding labels"), ("patient_id", "Patient"),
              ("follow_up", "Follow-up"), ("age", "Age"), ("sex", "Sex"), ("view", "View"),
              ("size", "Original size"), ("spacing", "Pixel spacing"), ("n_boxes", "Boxes"),
              ("split", "Split"), ("path", "File"))

    def __init__(self, parent=None):
        super().__init__(parent)
        self.root = None   # dataset folder: the File row shows paths relative to it (full path as tooltip)
        self.synthetic = False   # synthetic images belong to no split: the index's split would mislead
        self.values: dict[str, QLabel] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        half = (len(self.FIELDS) + 1) // 2
        for number, (key, title) in enumerate(self.FIELDS):
            label = QLabel("")
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
            self.values[key] = label
            caption = QLabel(f"{title}:")
            caption.setObjectName("caption")
            if key == "path":  # long: give it the whole last row
                grid.addWidget(caption, half, 0)
                grid.addWidget(label, half, 1, 1, 3)
                continue
            row, column = number % half, 2 * (number // half)
            grid.addWidget(caption, row, column)
            grid.addWidget(label, row, column + 1)

    def show_row(self, row: dict) -> None:
        """Show one table row (as a dict); an empty dict clears the panel."""
        if not row:
            for label in self.values.values():
                label.setText("")
            return
        row = dict(row)
        row["size"] = f"{row.get('orig_width', '')} x {row.get('orig_height', '')}"
        row["spacing"] = f"{row.get('spacing_x', '')} x {row.get('spacing_y', '')}"
        path = row.get("path") or ""
        self.values["path"].setToolTip(path)
        if path and self.root is not None and Path(path).is_relative_to(self.root):
            path = str(Path(path).relative_to(self.root))
        row["path"] = path or "(file not found)"
        if self.synthetic:
            row["split"] = "none (synthetic)"
        for key, label in self.values.items():
            value = row.get(key, "")
            label.setText("" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value))
