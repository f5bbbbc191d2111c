"""Thumbnail grid: a list model over the table model's visible rows, images decoded in a thread pool.

Decoding runs in `QThreadPool` tasks (core's `load_image`, then a QImage, which is safe off the GUI
thread); finished thumbnails come back through a queued signal and live in a bounded LRU cache.
Only rows the view actually paints ask for a thumbnail, so scrolling 112,120 rows stays cheap.
"""
from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QRunnable, QSize, Qt, QThreadPool,
                            QTimer, Signal)
from PySide6.QtGui import QColor, QImage, QPixmap

from core.errors import UserError
from core.data.images import load_image

THUMB_SIZE = 128


class _Signals(QObject):
    ready = Signal(str, QImage)
    failed = Signal(str, str)


class _LoadThumbnail(QRunnable):
    def __init__(self, path: str, signals: _Signals):
        super().__init__()
        self._path = path
        self._signals = signals

    def run(self) -> None:
        try:
            pixels = load_image(self._path, size=THUMB_SIZE)
        except (UserError, OSError, ValueError) as error:
            self._signals.failed.emit(self._path, str(error))
            return
        height, width = pixels.shape
        image = QImage(pixels.data, width, height, width, QImage.Format_Grayscale8).copy()
        self._signals.ready.emit(self._path, image)


class ThumbnailCache(QObject):
    """Path -> QPixmap, filled asynchronously; emits `updated(path)` when a thumbnail arrives."""

    updated = Signal(str)

    def __init__(self, limit: int = 3000, parent=None):
        super().__init__(parent)
        self._limit = limit
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self.failures: dict[str, str] = {}
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, QThreadPool.globalInstance().maxThreadCount() - 1))
        self._signals = _Signals()
        self._signals.ready.connect(self._store)
        self._signals.failed.connect(self._fail)

    def get(self, path: str) -> QPixmap | None:
        pixmap = self._pixmaps.get(path)
        if pixmap is not None:
            self._pixmaps.move_to_end(path)
            return pixmap
        if path and path not in self._pending and path not in self.failures:
            self._pending.add(path)
            self._pool.start(_LoadThumbnail(path, self._signals))
        return None

    def wait(self) -> None:
        """Block until queued decodes end (tests, shutdown)."""
        self._pool.waitForDone()

    def _store(self, path: str, image: QImage) -> None:
        self._pending.discard(path)
        self._pixmaps[path] = QPixmap.fromImage(image)
        while len(self._pixmaps) > self._limit:
            self._pixmaps.popitem(last=False)
        self.updated.emit(path)

    def _fail(self, path: str, message: str) -> None:
        self._pending.discard(path)
        self.failures[path] = message
        self.updated.emit(path)


class ThumbnailModel(QAbstractListModel):
    """Same rows as the table model, shown as image name + thumbnail."""

    def __init__(self, table_model, paths, cache: ThumbnailCache, parent=None):
        super().__init__(parent)
        self._table = table_model
        self._paths = paths
        self._cache = cache
        self._placeholder = QPixmap(QSize(THUMB_SIZE, THUMB_SIZE))
        self._placeholder.fill(QColor("#2b2f36"))
        self._repaint = QTimer(self, singleShot=True, interval=60)
        self._repaint.timeout.connect(self._repaint_all)
        table_model.modelReset.connect(self._reset)
        cache.updated.connect(self._repaint.start)

    def set_paths(self, paths) -> None:
        self.beginResetModel()
        self._paths = paths
        self.endResetModel()

    def _reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def _repaint_all(self) -> None:
        """Coalesced: one repaint for a burst of arrivals (the view repaints only what it shows)."""
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1), [Qt.DecorationRole])

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else self._table.rowCount()

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        source = self._table.source_row(index.row())
        if role == Qt.DisplayRole:
            return self._table.index(index.row(), 0).data()
        if role == Qt.DecorationRole:
            path = self._paths[source]
            if path in self._cache.failures:
                return self._placeholder
            return self._cache.get(path) or self._placeholder
        if role == Qt.ToolTipRole:
            return self._table.index(index.row(), 1).data()
        return None
