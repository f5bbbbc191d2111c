"""The Evaluate tab: run `core.evaluation.evaluate` / `core.evaluation.augment_bench` in a worker and show their reports and plots.

The panel only gathers the user's choices into core's config dataclasses, starts core's "evaluate" or
"augment-bench" task with `app.workers.start_job` (in a child process) and displays what comes back (report tables,
the PNG plots core wrote into the run's `evaluation/` folder). Opening a run that was evaluated before shows its saved reports at once.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QScrollArea, QSpinBox, QTableWidget, QTableWidgetItem,
                               QTabWidget, QToolButton, QVBoxLayout, QWidget)

from app.messages import plain
from app.workers import JobHandle, start_job

PLOT_TITLES = {"confusion": "Confusion", "accuracy": "Accuracy", "diversity": "Diversity",
               "nearest": "Nearest training images", "augment": "Augmentation"}


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


class EvaluatePanel(QWidget):
    """Choose a run and real data, evaluate or benchmark, read the numbers and the plots."""

    error = Signal(str)
    report_ready = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._runner: JobHandle | None = None
        self.run_edit = QLineEdit(placeholderText="run folder with generator.keras")
        self.data_edit = QLineEdit(placeholderText="prepared cache or NIH folder (empty: the run's training cache)")
        self._shown_run = ""
        self.run_edit.editingFinished.connect(self._run_typed)
        self.n_spin = self._spin(2, 20000, 500, "generated images per class")
        self.steps_spin = self._spin(10, 100000, 800, "training steps of the evaluator classifier")
        self.seeds_spin = self._spin(1, 20, 3, "augment-bench: classifier seeds per arm")

        form = QFormLayout()
        form.addRow("Run", self._with_browse(self.run_edit, "Choose a run folder"))
        form.addRow("Real data", self._with_browse(self.data_edit, "Choose a prepared cache or an NIH folder"))
        numbers = QHBoxLayout()
        for label, spin in (("Images per class", self.n_spin), ("Classifier steps", self.steps_spin),
                            ("Seeds", self.seeds_spin)):
            numbers.addWidget(QLabel(label))
            numbers.addWidget(spin)
        numbers.addStretch(1)
        form.addRow(numbers)

        self.evaluate_button = QPushButton("Evaluate", toolTip="conditional accuracy, FD/KID, MS-SSIM, memorisation")
        self.augment_button = QPushButton("Augment bench", toolTip="does real + synthetic beat real only?")
        self.stop_button = QPushButton("Stop", enabled=False)
        self.evaluate_button.clicked.connect(self.start_evaluation)
        self.augment_button.clicked.connect(self.start_augment_bench)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar(textVisible=True)
        self.status = QLabel(wordWrap=True)
        buttons = QHBoxLayout()
        for widget in (self.evaluate_button, self.augment_button, self.stop_button):
            buttons.addWidget(widget)
        buttons.addWidget(self.progress, 1)

        self.table = self._table()
        self.augment_table = self._table()
        self.summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.augment_summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.results = QTabWidget()
        self.results.addTab(self._stack(self.summary, self.table), "Quality")
        self.results.addTab(self._stack(self.augment_summary, self.augment_table), "Augmentation bench")
        self.plots: dict[str, QLabel] = {}
        for key, title in PLOT_TITLES.items():
            label = QLabel(alignment=Qt.AlignCenter)
            area = QScrollArea(widgetResizable=True)
            area.setWidget(label)
            self.plots[key] = label
            self.results.addTab(area, title)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.results, 1)

    # ---- building blocks
    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox(minimum=low, maximum=high, toolTip=tip)
        spin.setValue(value)
        return spin

    @staticmethod
    def _table() -> QTableWidget:
        table = QTableWidget(editTriggers=QTableWidget.NoEditTriggers)
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        return table

    @staticmethod
    def _stack(*widgets) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        for widget in widgets:
            layout.addWidget(widget)
        return page

    def _with_browse(self, edit: QLineEdit, caption: str) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        button = QToolButton(text="Browse…")
        button.clicked.connect(lambda: self._browse(edit, caption))
        row.addWidget(button)
        return row

    def _browse(self, edit: QLineEdit, caption: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, caption, edit.text())
        if folder:
            edit.setText(folder)
            if edit is self.run_edit:
                self.set_run(folder)

    # ---- public API for the main window
    def _run_typed(self) -> None:
        if self.run_edit.text() != self._shown_run:
            self.set_run(self.run_edit.text())

    def set_run(self, path) -> None:
        """Point the panel at a run folder and show any reports it already has."""
        self._shown_run = str(path) if path else ""
        self.run_edit.setText(self._shown_run)
        folder = Path(path) / "evaluation" if path else None
        for name, show in (("report.json", self.show_report), ("augment_bench.json", self.show_augment_report)):
            if folder and (folder / name).is_file():
                try:
                    show(json.loads((folder / name).read_text(encoding="utf-8")))
                except (OSError, ValueError, KeyError) as error:
                    self.status.setText(f"{folder / name}: cannot show the saved report ({error})")

    def set_dataset(self, path) -> None:
        self.data_edit.setText(str(path) if path else "")

    def is_running(self) -> bool:
        return self._runner is not None

    # ---- running
    def start_evaluation(self) -> None:
        from core.evaluation.evaluate import EvaluateConfig

        config = EvaluateConfig(run=self.run_edit.text().strip(), data=self.data_edit.text().strip(),
                                n=self.n_spin.value(), classifier_steps=self.steps_spin.value())
        self._start("evaluate", config, self.show_report, "Evaluating")

    def start_augment_bench(self) -> None:
        from core.evaluation.augment_bench import AugmentBenchConfig

        config = AugmentBenchConfig(run=self.run_edit.text().strip(), data=self.data_edit.text().strip(),
                                    seeds=self.seeds_spin.value(), classifier_steps=self.steps_spin.value())
        self._start("augment-bench", config, self.show_augment_report, "Augmentation bench")

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.request_stop()
            self.status.setText("Stopping…")

    def _start(self, task: str, config, on_result, what: str) -> None:
        if self._runner is not None:
            return
        if not config.run:
            self._fail("Choose a run folder first.")
            return
        runner = start_job(task, config)
        runner.progress.connect(self._progress)
        runner.finished.connect(on_result)
        runner.finished.connect(lambda _: self.status.setText(f"{what}: done."))
        runner.cancelled.connect(lambda message, _: self.status.setText(f"{what}: stopped."))
        runner.failed.connect(self._fail)
        runner.done.connect(self._finished)
        self._runner = runner
        self._set_busy(True)
        self.status.setText(f"{what}…")

    def _progress(self, progress) -> None:
        self.progress.setMaximum(max(progress.total, 1))
        self.progress.setValue(progress.done)
        if progress.message:
            self.progress.setFormat(f"%p%  {progress.message}")

    def _fail(self, message: str) -> None:
        message = plain(message)
        self.status.setText(message)
        self.error.emit(message)

    def _finished(self) -> None:
        self._runner = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.evaluate_button.setEnabled(not busy)
        self.augment_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        if not busy:
            self.progress.setFormat("%p%")

    # ---- showing results
    @staticmethod
    def _fill(table: QTableWidget, header: list[str], rows: list[list]) -> None:
        table.clear()
        table.setColumnCount(len(header))
        table.setRowCount(len(rows))
        table.setHorizontalHeaderLabels(header)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(_cell(value))
                item.setTextAlignment(Qt.AlignVCenter | (Qt.AlignLeft if c == 0 else Qt.AlignRight))
                table.setItem(r, c, item)

    def _show_plot(self, key: str, path: Path) -> None:
        pixmap = QPixmap(str(path))
        self.plots[key].setPixmap(pixmap)
        self.plots[key].setText("" if not pixmap.isNull() else f"{path.name}: no plot")

    def show_report(self, report: dict) -> None:
        from core.evaluation.evaluate import report_table

        self._fill(self.table, *report_table(report))
        cond, memo = report["conditional_accuracy"], report["memorisation"]
        self.summary.setText(
            f"Evaluator accuracy on held-out real images: {report['evaluator']['held_out_accuracy']:.3f} "
            f"({report['evaluator']['held_out_images']} images). Conditional accuracy of generated images: "
            f"{_cell(cond['mean'])} (chance {cond['chance']:.3f}). Near-copies of training images: "
            f"{memo['flagged']} of {report['n_per_class'] * len(report['classes'])}. "
            "FD/KID 'real' columns are held-out real vs training real: the floor for this many images.")
        folder = Path(report["run"]) / "evaluation"
        for key, name in report.get("plots", {}).items():
            if key in self.plots:
                self._show_plot(key, folder / name)
        self.results.setCurrentIndex(0)
        self.report_ready.emit(report)

    def show_augment_report(self, report: dict) -> None:
        from core.evaluation.augment_bench import gain_text, report_table

        self._fill(self.augment_table, *report_table(report))
        self.augment_summary.setText(f"Held-out real test images: {report['test_images']}. {gain_text(report)}.")
        if report.get("plot"):
            self._show_plot("augment", Path(report["run"]) / "evaluation" / report["plot"])
        self.results.setCurrentIndex(1)
