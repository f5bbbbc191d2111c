"""The dataset index as a Qt table: one model over core's table, filtered and sorted by numpy index arrays.

No proxy model and no per-row Python on a filter change: the visible rows are one int array
(`rows`), set from core's boolean mask; `data()` only reads column arrays prepared once. This stays
smooth with the 112,120 rows of the real dataset. Sorting is a layout change, not a reset: the
view's current row and selection (persistent indexes) follow their images to the new positions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

COLUMNS: tuple[tuple[str, str], ...] = (
    ("image", "Image"),
    ("finding_labels", "Finding labels"),
    ("patient_id", "Patient"),
    ("age", "Age"),
    ("sex", "Sex"),
    ("view", "View"),
    ("n_boxes", "Boxes"),
)
NUMERIC = {"patient_id", "age", "n_boxes"}


class IndexTableModel(QAbstractTableModel):
    """Rows of `DatasetIndex.table` selected by a mask; `source_row(r)` maps back to the table row."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._columns: dict[str, np.ndarray] = {}
        self._sort_keys: dict[str, np.ndarray] = {}
        self.rows = np.zeros(0, dtype=np.int64)
        self._sort: tuple[int, Qt.SortOrder] | None = None

    def set_table(self, table: pd.DataFrame) -> None:
        self.beginResetModel()
        self._columns = {}
        self._sort_keys = {}
        for name, _ in COLUMNS:
            series = table[name] if name in table else pd.Series([""] * len(table))
            if name in NUMERIC:
                numbers = pd.to_numeric(series, errors="coerce")
                self._sort_keys[name] = numbers.fillna(-1).to_numpy(dtype=np.float64)
                self._columns[name] = self._sort_keys[name]
            else:
                text = series.fillna("").astype(str).to_numpy(dtype=object)
                self._columns[name] = text
                self._sort_keys[name] = text
        self.rows = np.arange(len(table), dtype=np.int64)
        self.endResetModel()

    def set_box_counts(self, counts: np.ndarray) -> None:
        """Refresh the Boxes column after an edit (counts per table row)."""
        self._sort_keys["n_boxes"] = self._columns["n_boxes"] = counts.astype(np.float64)
        if len(self.rows):
            column = [name for name, _ in COLUMNS].index("n_boxes")
            self.dataChanged.emit(self.index(0, column), self.index(len(self.rows) - 1, column))

    def refresh_text(self, table: pd.DataFrame, rows) -> None:
        """Re-read the text columns of some table rows (an edited Finding Labels cell)."""
        for name, _ in COLUMNS:
            if name not in NUMERIC and name in table:
                self._columns[name][rows] = table[name].iloc[rows].fillna("").astype(str).to_numpy(dtype=object)
        if len(self.rows):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))

    def set_mask(self, mask: np.ndarray) -> None:
        self.beginResetModel()
        self.rows = np.flatnonzero(mask)
        self._apply_sort()
        self.endResetModel()

    def source_row(self, row: int) -> int:
        return int(self.rows[row])

    def view_row(self, source_row: int) -> int:
        """Position of a table row among the visible rows, or -1."""
        found = np.flatnonzero(self.rows == source_row)
        return int(found[0]) if len(found) else -1

    # ---- Qt model interface
    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        name = COLUMNS[index.column()][0]
        if role == Qt.DisplayRole:
            value = self._columns[name][self.rows[index.row()]]
            if name in NUMERIC:
                return "" if value < 0 else str(int(value))
            return value
        if role == Qt.TextAlignmentRole and name in NUMERIC:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section][1]
        return None

    def sort(self, column, order=Qt.AscendingOrder):
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        sources = [int(self.rows[index.row()]) for index in persistent]
        self._sort = (column, order) if column >= 0 else None   # -1: no sort column, the dataset's order
        if self._sort is None:
            self.rows = np.sort(self.rows)
        self._apply_sort()
        if persistent:
            position = np.empty(int(self.rows.max()) + 1, dtype=np.int64)
            position[self.rows] = np.arange(len(self.rows))
            self.changePersistentIndexList(
                persistent, [self.index(int(position[source]), index.column())
                             for index, source in zip(persistent, sources)])
        self.layoutChanged.emit()

    def _apply_sort(self) -> None:
        if self._sort is None or not len(self.rows):
            return
        column, order = self._sort
        keys = self._sort_keys[COLUMNS[column][0]][self.rows]
        positions = np.argsort(keys, kind="stable")
        if order == Qt.DescendingOrder:
            positions = positions[::-1]
        self.rows = self.rows[positions]
