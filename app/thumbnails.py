"""Thumbnail grid: each cell shows the image with its boxes outlined, a box count, the name and the Finding Labels.

Decoding runs in `QThreadPool` tasks (core's `load_image` + `letterbox`, then a QImage, which is safe
off the GUI thread); finished thumbnails come back through a queued signal and live in a bounded LRU
cache with their letterbox geometry, so boxes (in image pixels) are drawn at the right place. Only
rows the view actually paints ask for a thumbnail, so scrolling 112,120 rows stays cheap.
"""
from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QPoint, QRect, QRectF, QRunnable, QSize, Qt,
                            QThreadPool, QTimer, Signal)
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

from app.theme import colour_of
from core.data.images import Letterbox, letterbox, load_image
from core.errors import UserError

THUMB_SIZE = 128
MARGIN = 4
TEXT_LINES = 2
LABELS_ROLE = Qt.UserRole + 1    # the image's Finding Labels cell
BOXES_ROLE = Qt.UserRole + 2     # tuple of core Box
GEOMETRY_ROLE = Qt.UserRole + 3  # Letterbox of the decoded thumbnail, or None


class _Signals(QObject):
    ready = Signal(str, QImage, object)
    failed = Signal(str, str)


class _LoadThumbnail(QRunnable):
    def __init__(self, path: str, signals: _Signals):
        super().__init__()
        self._path = path
        self._signals = signals

    def run(self) -> None:
        try:
            pixels, geometry = letterbox(load_image(self._path), THUMB_SIZE)
        except (UserError, OSError, ValueError) as error:
            self._signals.failed.emit(self._path, str(error))
            return
        height, width = pixels.shape
        image = QImage(pixels.data, width, height, width, QImage.Format_Grayscale8).copy()
        self._signals.ready.emit(self._path, image, geometry)


class ThumbnailCache(QObject):
    """Path -> (QPixmap, Letterbox), filled asynchronously; emits `updated(path)` when one arrives."""

    updated = Signal(str)

    def __init__(self, limit: int = 3000, parent=None):
        super().__init__(parent)
        self._limit = limit
        self._entries: OrderedDict[str, tuple[QPixmap, Letterbox]] = OrderedDict()
        self._pending: set[str] = set()
        self.failures: dict[str, str] = {}
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, QThreadPool.globalInstance().maxThreadCount() - 1))
        self._signals = _Signals()
        self._signals.ready.connect(self._store)
        self._signals.failed.connect(self._fail)

    def get(self, path: str) -> QPixmap | None:
        entry = self.entry(path)
        return None if entry is None else entry[0]

    def entry(self, path: str) -> tuple[QPixmap, Letterbox] | None:
        """The thumbnail and its geometry, or None while it is decoded (this call queues it)."""
        entry = self._entries.get(path)
        if entry is not None:
            self._entries.move_to_end(path)
            return entry
        if path and path not in self._pending and path not in self.failures:
            self._pending.add(path)
            self._pool.start(_LoadThumbnail(path, self._signals))
        return None

    def wait(self) -> None:
        """Block until queued decodes end (tests, shutdown)."""
        self._pool.waitForDone()

    def _store(self, path: str, image: QImage, geometry: Letterbox) -> None:
        self._pending.discard(path)
        self._entries[path] = (QPixmap.fromImage(image), geometry)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        self.updated.emit(path)

    def _fail(self, path: str, message: str) -> None:
        self._pending.discard(path)
        self.failures[path] = message
        self.updated.emit(path)


class ThumbnailModel(QAbstractListModel):
    """Same rows, in the same order, as the table model; one cell per image."""

    def __init__(self, table_model, paths, cache: ThumbnailCache, parent=None):
        super().__init__(parent)
        self._table = table_model
        self._paths = paths
        self._boxes: dict = {}
        self._cache = cache
        self._placeholder = QPixmap(QSize(THUMB_SIZE, THUMB_SIZE))
        self._placeholder.fill(QColor("#2b2f36"))
        self._repaint = QTimer(self, singleShot=True, interval=60)
        self._repaint.timeout.connect(self._repaint_all)
        table_model.modelReset.connect(self._reset)
        table_model.layoutChanged.connect(self._reset)   # sorted: same rows, new order
        table_model.dataChanged.connect(self._repaint.start)   # edited labels or box counts
        cache.updated.connect(self._repaint.start)

    def set_paths(self, paths) -> None:
        self.beginResetModel()
        self._paths = paths
        self.endResetModel()

    def set_boxes(self, boxes: dict) -> None:
        """Boxes per image name (after opening or an edit)."""
        self._boxes = boxes
        self._repaint.start()

    def _reset(self, *_) -> None:
        self.beginResetModel()
        self.endResetModel()

    def _repaint_all(self) -> None:
        """Coalesced: one repaint for a burst of arrivals (the view repaints only what it shows)."""
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1))

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else self._table.rowCount()

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == Qt.DisplayRole:
            return self._table.index(row, 0).data()
        if role == LABELS_ROLE:
            return self._table.index(row, 1).data()
        if role == BOXES_ROLE:
            return self._boxes.get(self._table.index(row, 0).data(), ())
        if role in (Qt.DecorationRole, GEOMETRY_ROLE):
            path = self._paths[self._table.source_row(row)]
            entry = None if path in self._cache.failures else self._cache.entry(path)
            if role == GEOMETRY_ROLE:
                return None if entry is None else entry[1]
            return self._placeholder if entry is None else entry[0]
        if role == Qt.ToolTipRole:
            boxes = self.data(index, BOXES_ROLE)
            count = f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}" if boxes else "no boxes"
            return f"{self.data(index)}\n{self.data(index, LABELS_ROLE)}\n{count}"
        return None


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a cell: thumbnail, box outlines in their finding's colour, box count, name, labels."""

    def cell_size(self, font_metrics: QFontMetrics) -> QSize:
        return QSize(THUMB_SIZE + 2 * MARGIN + 8, THUMB_SIZE + 3 * MARGIN + TEXT_LINES * font_metrics.height())

    def sizeHint(self, option, index) -> QSize:
        return self.cell_size(option.fontMetrics)

    def paint(self, painter: QPainter, option, index) -> None:
        painter.save()
        palette = option.palette
        cell = option.rect
        if option.state & QStyle.State_Selected:
            painter.fillRect(cell, palette.highlight())
        image_rect = QRect(cell.x() + (cell.width() - THUMB_SIZE) // 2, cell.y() + MARGIN, THUMB_SIZE, THUMB_SIZE)
        painter.drawPixmap(image_rect, index.data(Qt.DecorationRole))
        boxes = index.data(BOXES_ROLE) or ()
        geometry = index.data(GEOMETRY_ROLE)
        if boxes and geometry is not None:
            self._draw_boxes(painter, image_rect, boxes, geometry)
        if boxes:
            self._draw_count(painter, image_rect, boxes)
        metrics = option.fontMetrics
        text_width = cell.width() - 2 * MARGIN
        line = QRect(cell.x() + MARGIN, image_rect.bottom() + MARGIN, text_width, metrics.height())
        selected = bool(option.state & QStyle.State_Selected)
        painter.setPen(palette.highlightedText().color() if selected else palette.text().color())
        painter.drawText(line, Qt.AlignHCenter, metrics.elidedText(index.data() or "", Qt.ElideMiddle, text_width))
        labels = index.data(LABELS_ROLE) or ""
        painter.setPen(QColor("#ffffff") if selected else QColor("#8fb8de" if labels != "No Finding" else "#7b8794"))
        painter.drawText(line.translated(0, metrics.height()), Qt.AlignHCenter,
                         metrics.elidedText(labels.replace("|", ", "), Qt.ElideRight, text_width))
        painter.restore()

    @staticmethod
    def _draw_boxes(painter: QPainter, image_rect: QRect, boxes, geometry: Letterbox) -> None:
        scale = image_rect.width() / geometry.size
        for box in boxes:
            (x, y, w, h), = geometry.map_boxes([[box.x, box.y, box.w, box.h]])
            painter.setPen(QPen(QColor(colour_of(box.label)), 1.5))
            painter.drawRect(QRectF(image_rect.x() + x * scale, image_rect.y() + y * scale, w * scale, h * scale))

    @staticmethod
    def _draw_count(painter: QPainter, image_rect: QRect, boxes) -> None:
        """A badge at the top right: the number of boxes, on the colour of the first box's finding."""
        text = f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}"
        metrics = painter.fontMetrics()
        badge = QRect(0, 0, metrics.horizontalAdvance(text) + 8, metrics.height() + 2)
        badge.moveTopRight(image_rect.topRight() + QPoint(-2, 2))
        colour = QColor(colour_of(boxes[0].label))
        painter.setPen(Qt.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(badge, 3, 3)
        painter.setPen(QColor("#101214") if colour.lightnessF() > 0.55 else QColor("#ffffff"))
        painter.drawText(badge, Qt.AlignCenter, text)
