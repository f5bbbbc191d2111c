"""The browser: filters on the left, the filtered images as a table or a thumbnail grid.

Filtering is core's `DatasetIndex.filter` (a numpy mask, no per-row Python); the label list shows how
many of the filtered images carry each label. A text edit waits 200 ms after the last keystroke before
filtering, so typing never queues a filter per character. The selected image survives filtering and
sorting while it stays in the list; when a filter removes it, the first remaining image is shown
(or none). The Finding labels column takes the width the others leave, so the table never needs a
horizontal scroll bar and the Boxes column is always in view.
"""
from __future__ import annotations

import pandas as pd
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QComboBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListView, QListWidget,
                               QListWidgetItem, QRadioButton, QSpinBox, QStackedWidget, QTableView,
                               QToolButton, QVBoxLayout, QWidget)

from app.table_model import COLUMNS, IndexTableModel
from app.thumbnails import ThumbnailCache, ThumbnailDelegate, ThumbnailModel
from core.data.annotations import boxes_from_frame
from core.labels import NIH_LABELS

ANY = "any"


class FilterPanel(QWidget):
    """The filter controls; emits `changed` (debounced) whenever the user changes one."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self.changed)

        self.search = QLineEdit(placeholderText="Search image name  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._debounce.start)

        self.mode = QComboBox()
        self.mode.addItem("any of the checked labels", "any")
        self.mode.addItem("all of the checked labels", "all")
        self.mode.addItem("only the checked labels", "only")
        self.mode.setToolTip("any: at least one checked label; all: every checked label; "
                             "only: no label outside the checked ones")
        self.labels = QListWidget()
        self.labels.setObjectName("labelCounts")
        self.labels.setUniformItemSizes(True)
        for name in NIH_LABELS:
            item = QListWidgetItem(name)
            item.setData(Qt.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked)
            self.labels.addItem(item)
        self.labels.itemChanged.connect(self._changed)

        self.sex = self._combo([("any", ANY), ("female", "F"), ("male", "M")])
        self.view = self._combo([("any", ANY), ("PA", "PA"), ("AP", "AP")])
        self.has_box = self._combo([("any", ANY), ("with boxes", True), ("without boxes", False)])
        self.age_min = self._spin(0)
        self.age_max = self._spin(120)
        ages = QHBoxLayout()
        ages.addWidget(self.age_min)
        ages.addWidget(QLabel("to"))
        ages.addWidget(self.age_max)

        clear = QToolButton(text="Clear filters")
        clear.clicked.connect(self.clear)

        form = QFormLayout()
        form.addRow("Sex", self.sex)
        form.addRow("View", self.view)
        form.addRow("Age", ages)
        form.addRow("Boxes", self.has_box)
        label_box = QGroupBox("Labels (count in filter)")
        label_layout = QVBoxLayout(label_box)
        label_layout.addWidget(self.mode)
        label_layout.addWidget(self.labels)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addLayout(form)
        layout.addWidget(label_box, 1)
        layout.addWidget(clear, 0, Qt.AlignRight)
        self.mode.currentIndexChanged.connect(self._changed)

    def _combo(self, items) -> QComboBox:
        combo = QComboBox()
        for text, value in items:
            combo.addItem(text, value)
        combo.currentIndexChanged.connect(self._changed)
        return combo

    def _spin(self, value: int) -> QSpinBox:
        spin = QSpinBox(minimum=0, maximum=120, value=value, suffix=" y")
        spin.valueChanged.connect(self._debounce.start)
        return spin

    def _changed(self, *_):
        self._debounce.start()

    def clear(self) -> None:
        self.blockSignals(True)
        self.search.clear()
        for combo in (self.sex, self.view, self.has_box, self.mode):
            combo.setCurrentIndex(0)
        self.age_min.setValue(0)
        self.age_max.setValue(120)
        for row in range(self.labels.count()):
            self.labels.item(row).setCheckState(Qt.Unchecked)
        self.blockSignals(False)
        self._debounce.start()

    def checked_labels(self) -> list[str]:
        return [self.labels.item(r).data(Qt.UserRole) for r in range(self.labels.count())
                if self.labels.item(r).checkState() == Qt.Checked]

    def set_counts(self, counts: dict[str, int]) -> None:
        self.labels.blockSignals(True)
        for row in range(self.labels.count()):
            item = self.labels.item(row)
            name = item.data(Qt.UserRole)
            item.setText(f"{name}  ({counts.get(name, 0):,})")
        self.labels.blockSignals(False)


LABELS_COLUMN = 1
MIN_LABELS_WIDTH = 100
WIDEST_VALUE = {"patient_id": "30805", "age": "120", "sex": "M", "view": "AP", "n_boxes": "99"}   # NIH's widest


class DatasetPanel(QWidget):
    """Filters + table/grid over a DatasetIndex. Emits `image_selected(table_row)`, or
    `selection_cleared()` when the filters leave no image."""

    image_selected = Signal(int)
    selection_cleared = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.index = None
        self.filters = FilterPanel()
        self.filters.changed.connect(self.apply_filters)
        self.model = IndexTableModel(self)
        self.cache = ThumbnailCache(parent=self)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.AscendingOrder)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setSectionResizeMode(LABELS_COLUMN, QHeaderView.Stretch)
        header.setStretchLastSection(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.ElideRight)
        self._fit_columns()

        self.grid_model = ThumbnailModel(self.model, [], self.cache, self)
        self.grid = QListView()
        self.grid.setModel(self.grid_model)
        delegate = ThumbnailDelegate(self.grid)
        self.grid.setItemDelegate(delegate)
        self.grid.setViewMode(QListView.IconMode)
        self.grid.setResizeMode(QListView.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setMovement(QListView.Static)
        self.grid.setGridSize(delegate.cell_size(self.grid.fontMetrics()) + QSize(4, 4))
        self.grid.setSpacing(4)
        self.grid.setLayoutMode(QListView.Batched)
        self.grid.setBatchSize(400)
        self.model.layoutChanged.connect(self._sorted)   # after the grid model's own reset on a sort

        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.grid)
        self.table.selectionModel().currentRowChanged.connect(self._table_row_changed)
        self.grid.selectionModel().currentChanged.connect(self._grid_row_changed)

        self.as_table = QRadioButton("Table")
        self.as_grid = QRadioButton("Thumbnails")
        self.as_table.setChecked(True)
        toggle = QButtonGroup(self)
        toggle.addButton(self.as_table)
        toggle.addButton(self.as_grid)
        self.as_grid.toggled.connect(self._switch_view)
        self.count_label = QLabel()
        self.count_label.setObjectName("countLabel")
        top = QHBoxLayout()
        top.addWidget(self.count_label, 1)
        top.addWidget(self.as_table)
        top.addWidget(self.as_grid)

        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addLayout(top)
        right.addWidget(self.stack, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.filters.setFixedWidth(250)
        layout.addWidget(self.filters)
        layout.addLayout(right, 1)

    def _fit_columns(self, table: pd.DataFrame | None = None) -> None:
        """Widths from the font: every column but Finding labels fits its header (with the sort arrow)
        and its widest value (image names and patient ids measured on the table); Finding labels
        stretches over the rest and elides."""
        widest = dict(WIDEST_VALUE, image="00000000_000.png")
        if table is not None and len(table):
            names = table["image"].head(2000).astype(str)
            widest["image"] = names.iloc[int(names.str.len().to_numpy().argmax())]
            ids = pd.to_numeric(table["patient_id"], errors="coerce").dropna()
            if len(ids):
                widest["patient_id"] = str(int(ids.max()))
        cell, head = self.table.fontMetrics(), self.table.horizontalHeader().fontMetrics()
        widths = {}
        for column, (key, title) in enumerate(COLUMNS):
            if column != LABELS_COLUMN:
                widths[column] = max(head.horizontalAdvance(title) + 20,   # + the sort arrow
                                     cell.horizontalAdvance(widest.get(key, "")) + 12)
                self.table.setColumnWidth(column, widths[column])
        frame = 2 * self.table.frameWidth() + self.table.verticalScrollBar().sizeHint().width()
        self.table.setMinimumWidth(sum(widths.values()) + MIN_LABELS_WIDTH + frame)

    # ---- data
    def set_index(self, index) -> None:
        if self.index is not None and self.index.root != index.root:
            self.filters.clear()   # another dataset: the old filters could hide all of it
        self.index = index
        table = index.table
        self.model.set_table(table)
        self._fit_columns(table)
        self.grid_model.set_paths(table["path"].fillna("").astype(str).to_numpy(dtype=object))
        self.grid_model.set_boxes(boxes_from_frame(index.boxes))
        self.apply_filters()   # selects the first image

    def boxes_changed(self) -> None:
        """The index's boxes changed (an edit): refresh the Boxes column and the thumbnails' outlines."""
        self.model.set_box_counts(self.index.table["n_boxes"].to_numpy())
        self.grid_model.set_boxes(boxes_from_frame(self.index.boxes))

    def current_mask(self):
        f = self.filters
        labels = f.checked_labels()
        sex, view, has_box = f.sex.currentData(), f.view.currentData(), f.has_box.currentData()
        low, high = f.age_min.value(), f.age_max.value()
        return self.index.filter(
            labels=labels, match=f.mode.currentData(),
            sex=None if sex == ANY else sex, view=None if view == ANY else view,
            age=(low or None, None if high >= 120 else high) if (low > 0 or high < 120) else None,
            has_box=None if has_box == ANY else has_box, text=f.search.text().strip() or None,
        )

    def apply_filters(self) -> None:
        if self.index is None:
            return
        current = self.current_table_row()
        mask = self.current_mask()
        self.model.set_mask(mask)
        self.filters.set_counts(self.index.label_counts(mask))
        self.count_label.setText(f"{len(self.model.rows):,} of {len(mask):,} images")
        if current is not None and self.model.view_row(current) >= 0:
            self.select_table_row(current)
        elif self.model.rowCount():
            self.select_view_row(0)   # the shown image was filtered out: show the first that is left
        else:
            self.selection_cleared.emit()

    # ---- selection
    def current_table_row(self) -> int | None:
        index = self.table.currentIndex()
        return self.model.source_row(index.row()) if index.isValid() else None

    def select_table_row(self, table_row: int) -> None:
        row = self.model.view_row(table_row)
        if row >= 0:
            self.select_view_row(row)

    def select_view_row(self, row: int) -> None:
        if 0 <= row < self.model.rowCount():
            self.table.selectRow(row)
            self.table.setCurrentIndex(self.model.index(row, 0))
            self.table.scrollTo(self.model.index(row, 0))

    def step(self, delta: int) -> None:
        """Previous/next image in the filtered, sorted order."""
        index = self.table.currentIndex()
        row = index.row() + delta if index.isValid() else 0
        self.select_view_row(max(0, min(self.model.rowCount() - 1, row)))

    def _switch_view(self, grid: bool) -> None:
        """Table <-> thumbnails, with the current image in view."""
        self.stack.setCurrentIndex(1 if grid else 0)
        current = self.table.currentIndex()
        if current.isValid():
            if grid:
                self.grid.scrollTo(self.grid_model.index(current.row()), QAbstractItemView.PositionAtCenter)
            else:
                self.table.scrollTo(current, QAbstractItemView.PositionAtCenter)

    def _sorted(self, *_) -> None:
        """After a sort the current image keeps its place in the selection: bring it into view."""
        current = self.table.currentIndex()
        if current.isValid():
            self.table.scrollTo(current, QAbstractItemView.PositionAtCenter)
            self.grid.setCurrentIndex(self.grid_model.index(current.row()))

    def _table_row_changed(self, current, _previous) -> None:
        if current.isValid():
            grid_index = self.grid_model.index(current.row())
            if self.grid.currentIndex() != grid_index:
                self.grid.setCurrentIndex(grid_index)
            self.image_selected.emit(self.model.source_row(current.row()))

    def _grid_row_changed(self, current, _previous) -> None:
        if current.isValid() and self.table.currentIndex().row() != current.row():
            self.select_view_row(current.row())
