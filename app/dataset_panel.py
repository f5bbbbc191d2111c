"""The browser: filters on the left, the filtered images as a table or a thumbnail grid.

Filtering is core's `DatasetIndex.filter` (a numpy mask, no per-row Python); the label list shows how many of the filtered images carry each label. A text edit waits 200 ms after the last
keystroke before filtering, so typing never queues a filter per character.
"""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QComboBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListView, QListWidget,
                               QListWidgetItem, QRadioButton, QSpinBox, QStackedWidget, QTableView,
                               QToolButton, QVBoxLayout, QWidget)

from app.table_model import IndexTableModel
from app.thumbnails import THUMB_SIZE, ThumbnailCache, ThumbnailModel
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


class DatasetPanel(QWidget):
    """Filters + table/grid over a DatasetIndex. Emits `image_selected(table_row)`."""

    image_selected = Signal(int)

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
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        for column, width in enumerate((132, 140, 56, 40, 36, 40, 46)):
            self.table.setColumnWidth(column, width)

        self.grid_model = ThumbnailModel(self.model, [], self.cache, self)
        self.grid = QListView()
        self.grid.setModel(self.grid_model)
        self.grid.setViewMode(QListView.IconMode)
        self.grid.setResizeMode(QListView.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setMovement(QListView.Static)
        self.grid.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.grid.setGridSize(QSize(THUMB_SIZE + 16, THUMB_SIZE + 30))
        self.grid.setSpacing(4)
        self.grid.setLayoutMode(QListView.Batched)
        self.grid.setBatchSize(400)

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
        self.as_grid.toggled.connect(lambda grid: self.stack.setCurrentIndex(1 if grid else 0))
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

    # ---- data
    def set_index(self, index) -> None:
        self.index = index
        table = index.table
        self.model.set_table(table)
        self.grid_model.set_paths(table["path"].fillna("").astype(str).to_numpy(dtype=object))
        self.apply_filters()
        if self.model.rowCount():
            self.select_view_row(0)

    def boxes_changed(self) -> None:
        """The index's `n_boxes` column changed (an edit): refresh the Boxes column."""
        self.model.set_box_counts(self.index.table["n_boxes"].to_numpy())

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

    def _table_row_changed(self, current, _previous) -> None:
        if current.isValid():
            grid_index = self.grid_model.index(current.row())
            if self.grid.currentIndex() != grid_index:
                self.grid.setCurrentIndex(grid_index)
            self.image_selected.emit(self.model.source_row(current.row()))

    def _grid_row_changed(self, current, _previous) -> None:
        if current.isValid() and self.table.currentIndex().row() != current.row():
            self.select_view_row(current.row())
