"""The Train tab: settings form, Start/Stop/Resume, live loss and accuracy plots, sample grid, log.

The panel fills a `TrainConfig` and starts core's "train" task with `app.workers.start_job` (in a child
process); metrics rows, sample grids and log lines arrive through the handle's typed signals. The plots
are redrawn from a 10 Hz timer, never per row, so the window does not stutter however fast rows arrive.
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QToolButton, QVBoxLayout, QWidget)

from app.config_form import ConfigForm
from app.workers import JobHandle, start_job
from core.errors import UserError
from core.gan.config import RESUMABLE_CHANGES, TrainConfig
from core.gan.runs import RunPaths, read_metrics
from core.jobs import format_duration
from core.labels import DEFAULT_CLASSES, NIH_LABELS

LOSS_CURVES = (("d_loss_real", "D loss (real)", "#4cc9f0"), ("d_loss_fake", "D loss (fake)", "#f4a259"),
               ("g_loss", "G loss", "#8ac926"))
ACC_CURVES = (("d_acc_real", "D acc (real)", "#4cc9f0"), ("d_acc_fake", "D acc (fake)", "#f4a259"))
FORM_SKIP = ("run", "data", "resume")


class LivePlots(QWidget):
    """Loss and accuracy curves; `add(row)` only stores, a 10 Hz timer redraws when something changed."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self._dirty = False
        self.redraws = 0
        self.loss = pg.PlotWidget(title="Losses")
        self.acc = pg.PlotWidget(title="Discriminator accuracy")
        self.curves = {}
        for plot, spec in ((self.loss, LOSS_CURVES), (self.acc, ACC_CURVES)):
            plot.addLegend(offset=(-10, 10))
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "step")
            for key, name, colour in spec:
                self.curves[key] = plot.plot([], [], name=name, pen=pg.mkPen(colour, width=2))
        self.acc.setYRange(0, 1.05)
        self.timer = QTimer(self, interval=100)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss)
        layout.addWidget(self.acc)

    def clear(self) -> None:
        self.rows = []
        self._dirty = True

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self._dirty = True

    def points(self, key: str) -> int:
        x, _ = self.curves[key].getData()
        return 0 if x is None else len(x)

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        steps = np.array([row.get("step", 0) for row in self.rows], dtype=float)
        for key, curve in self.curves.items():
            values = np.array([row.get(key, np.nan) for row in self.rows], dtype=float)
            keep = np.isfinite(values)
            curve.setData(steps[keep], values[keep])


class TrainPanel(QWidget):
    status = Signal(str)
    run_finished = Signal(str)   # run folder with a generator.keras

    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.dataset = ""
        self.runner: JobHandle | None = None
        self.checkpoint_note = ""

        self.run_edit = QLineEdit(settings.value("train/run", str(Path.home() / "cxr-runs" / "run-1"), type=str))
        self.run_edit.setToolTip("Run folder: config.json, metrics.jsonl, checkpoints/, samples/, generator.keras")
        self.run_edit.editingFinished.connect(self.load_run)
        browse_run = QToolButton(text="…", toolTip="Choose the run folder")
        browse_run.clicked.connect(self._choose_run)
        self.cache_edit = QLineEdit(placeholderText="empty: the open dataset (prepared into the run folder)")
        self.cache_edit.setToolTip("Training images: leave empty to use the open dataset with the classes checked "
                                   "below, or choose a prepared cache folder")
        self.classes = QListWidget()
        self.classes.setToolTip("Classes to train on (each image must carry exactly one of them)")
        for name in NIH_LABELS:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in DEFAULT_CLASSES else Qt.Unchecked)
            self.classes.addItem(item)
        self.classes.setMaximumHeight(150)
        self.form = ConfigForm(TrainConfig, skip=FORM_SKIP)

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primaryButton")
        self.start_button.setToolTip("Start a new run in the run folder (Ctrl+Return)")
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run from its last checkpoint; steps/epochs may be raised")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.eta = QLabel("")
        self.eta.setMinimumWidth(180)

        self.plots = LivePlots()
        self.samples = QLabel("Samples appear here during training:\none row per class")
        self.samples.setAlignment(Qt.AlignCenter)
        self.samples.setMinimumSize(260, 200)
        self.samples.setObjectName("sampleGrid")
        self._sample_image: QImage | None = None
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(2000)
        self.log.setObjectName("logPane")

        self._build_layout(browse_run)
        self._set_running(False)
        self.load_run()

    def _build_layout(self, browse_run) -> None:
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_edit, 1)
        run_row.addWidget(browse_run)
        source = QGroupBox("Run and data")
        source_layout = QVBoxLayout(source)
        source_layout.addWidget(QLabel("Run folder"))
        source_layout.addLayout(run_row)
        source_layout.addWidget(QLabel("Prepared cache (optional)"))
        source_layout.addWidget(self.cache_edit)
        source_layout.addWidget(QLabel("Classes"))
        source_layout.addWidget(self.classes)
        settings_box = QGroupBox("Settings")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addWidget(self.form)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        left_layout.addWidget(source)
        left_layout.addWidget(settings_box)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)
        scroll.setMaximumWidth(420)

        buttons = QHBoxLayout()
        for button in (self.start_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.eta)
        bottom = QSplitter(Qt.Horizontal)
        bottom.addWidget(self.samples)
        bottom.addWidget(self.log)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        right_split = QSplitter(Qt.Vertical)
        right_split.addWidget(self.plots)
        right_split.addWidget(bottom)
        right_split.setStretchFactor(0, 2)
        right_split.setStretchFactor(1, 3)
        right = QVBoxLayout()
        right.addLayout(buttons)
        right.addWidget(right_split, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll)
        layout.addLayout(right, 1)

    # ---- inputs
    def set_dataset(self, root) -> None:
        self.dataset = str(root)

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", self.run_edit.text())
        if folder:
            self.run_edit.setText(folder)
            self.load_run()

    def checked_classes(self) -> tuple[str, ...]:
        return tuple(self.classes.item(r).text() for r in range(self.classes.count())
                     if self.classes.item(r).checkState() == Qt.Checked)

    def load_run(self) -> None:
        """Show an existing run: its settings, curves and latest sample grid (for Resume)."""
        paths = RunPaths(Path(self.run_edit.text()))
        self.plots.clear()
        exists = paths.config.exists()
        self.resume_button.setEnabled(exists and self.runner is None)
        if not exists:
            return
        try:
            saved = TrainConfig.load(paths.config)
        except UserError as error:
            self.append_log(str(error))
            return
        self.form.set_values({f.name: getattr(saved, f.name) for f in fields(saved) if f.name in self.form.editors})
        self.cache_edit.setText(saved.data if saved.data != self.dataset else "")
        self.set_checked_classes(saved.classes)
        rows = read_metrics(paths.metrics)
        for row in rows:
            self.plots.add(row)
        last = rows[-1].get("step", 0) if rows else 0
        checkpoint = paths.latest_checkpoint()
        self.log.clear()
        self.append_log(f"{paths.root}: {len(rows)} metrics rows up to step {last}; latest checkpoint: "
                        f"{checkpoint.name if checkpoint else 'none'}. Resume continues from it.")
        samples = sorted(paths.samples.glob("step_*.png")) if paths.samples.is_dir() else []
        if samples:
            self._show_grid_image(QImage(str(samples[-1])))

    def set_checked_classes(self, names) -> None:
        for r in range(self.classes.count()):
            item = self.classes.item(r)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    def build_config(self, resume: bool) -> TrainConfig:
        """The TrainConfig of the user's choices: the form's fields, the run folder, the data and classes."""
        values = self.form.values()
        run = self.run_edit.text().strip()
        if not run:
            raise UserError("Train: choose a run folder")
        if resume:
            saved = TrainConfig.load(Path(run) / "config.json")
            allowed = {k: v for k, v in values.items() if k in RESUMABLE_CHANGES}
            return replace(saved, run=run, resume=True, **allowed)
        data = self.cache_edit.text().strip() or self.dataset
        if not data:
            raise UserError("Train: open a dataset first, or choose a prepared cache")
        return TrainConfig(run=run, data=data, classes=list(self.checked_classes()), resume=False, **values)

    # ---- running
    def start(self, resume: bool) -> None:
        if self.runner is not None:
            return
        try:
            config = self.build_config(resume)
            config.validate()
        except (UserError, ValueError, TypeError) as error:
            self._fail(str(error))
            return
        self.settings.setValue("train/run", config.run)
        if not resume:
            self.plots.clear()
        self.log.clear()
        self.append_log(f"{'resuming' if resume else 'starting'} {config.run}")
        self.runner = start_job("train", config, min_interval=0.25, parent=self)
        self.runner.progress.connect(self._progress)
        self.runner.metrics.connect(self.plots.add)
        self.runner.samples.connect(lambda sample: self._show_grid(sample.grid))
        self.runner.log.connect(self.append_log)
        self.runner.finished.connect(self._finished)
        self.runner.cancelled.connect(self._cancelled)
        self.runner.failed.connect(self._fail)
        self.runner.done.connect(self._done)
        self._set_running(True)

    def stop(self) -> None:
        if self.runner is not None:
            self.append_log("stopping after the current step…")
            self.stop_button.setEnabled(False)
            self.runner.request_stop()

    def confirm_close(self, parent) -> bool:
        """Ask before closing during training; on yes, stop with a checkpoint and wait for it."""
        if self.runner is None or not self.runner.is_running():
            return True
        answer = QMessageBox.question(parent, "Training is running",
                                      "Stop training (a checkpoint is saved) and close?")
        if answer != QMessageBox.Yes:
            return False
        self.stop_and_wait()
        return True

    def stop_and_wait(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
            self.runner.wait()

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running and (Path(self.run_edit.text()) / "config.json").exists())
        self.stop_button.setEnabled(running)
        for widget in (self.form, self.classes, self.run_edit, self.cache_edit):
            widget.setEnabled(not running)

    def _progress(self, progress) -> None:
        self.progress.setMaximum(max(1, progress.total))
        self.progress.setValue(progress.done)
        self.eta.setText(f"{progress.done:,}/{progress.total:,}  ETA {format_duration(progress.eta_seconds)}")

    def _show_grid(self, grid: np.ndarray) -> None:
        grid = np.ascontiguousarray(grid)
        height, width = grid.shape
        self._show_grid_image(QImage(grid.data, width, height, width, QImage.Format_Grayscale8).copy())

    def _show_grid_image(self, image: QImage) -> None:
        self._sample_image = image
        self._rescale_samples()

    def _rescale_samples(self) -> None:
        if self._sample_image is not None and not self._sample_image.isNull():
            pixmap = QPixmap.fromImage(self._sample_image)
            self.samples.setPixmap(pixmap.scaled(self.samples.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale_samples()

    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _cancelled(self, message: str, summary) -> None:
        if summary is None:
            self.append_log(message)
            return
        self._finished(summary)

    def _finished(self, summary) -> None:
        state = "stopped" if summary.stopped else "finished"
        self.checkpoint_note = f"{state} at step {summary.step}/{summary.total_steps}"
        self.append_log(f"{self.checkpoint_note} ({summary.images_per_s:.1f} images/s); "
                        f"generator: {summary.generator}")
        self.status.emit(f"Training {self.checkpoint_note}")
        if summary.generator:
            self.run_finished.emit(summary.run_dir)

    def _fail(self, message: str) -> None:
        self.append_log(f"error: {message}")
        self.status.emit(message)
        QMessageBox.warning(self, "Training", message)

    def _done(self) -> None:
        self.runner = None
        self._set_running(False)
