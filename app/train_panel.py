"""The Train tab: settings form, Start/Stop/Resume, live loss and accuracy plots, sample grid, log.

The panel fills a `TrainConfig` and starts core's "train" task with `app.workers.start_job` (in a child
process); metrics rows, sample grids and log lines arrive through the handle's typed signals. The plots
are redrawn from a 10 Hz timer, never per row, so the window does not stutter however fast rows arrive.
"""
from __future__ import annotations

import importlib.util
import socket
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QDoubleSpinBox, QFileDialog, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                               QRadioButton, QScrollArea, QSizePolicy, QSplitter, QToolButton, QVBoxLayout, QWidget)

from app.config_form import ConfigForm
from app.messages import plain
from app.quality_plot import QualityPlot
from app.workers import JobHandle, start_job
from core.errors import UserError
from core.evaluation.live_quality import read_quality
from core.gan.config import RESUMABLE_CHANGES, TrainConfig
from core.gan.presets import PRESETS, apply_preset, estimated_steps, preset_named
from core.gan.runs import RunPaths, read_metrics
from core.jobs import format_duration
from core.labels import DEFAULT_CLASSES, NIH_LABELS

LOSS_CURVES = (("d_loss_real", "D loss (real)", "#4cc9f0"), ("d_loss_fake", "D loss (fake)", "#f4a259"),
               ("g_loss", "G loss", "#8ac926"))
ACC_CURVES = (("d_acc_real", "D acc (real)", "#4cc9f0"), ("d_acc_fake", "D acc (fake)", "#f4a259"))
FORM_SKIP = ("run", "data", "resume", "minutes")
STAGE_WORDS = {"preparing": "Preparing the images", "compiling": "Building and compiling the networks",
               "guide": "Learning your classes (class guide)", "training": "Training",
               "saving": "Saving the checkpoint and the generator"}


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
            # the key sits in the title, not on the curves
            key = "  ".join(f"<span style='color:{colour}'>&#9644; {name}</span>" for _, name, colour in spec)
            plot.setTitle(f"{plot.plotItem.titleLabel.text}<br><span style='font-size:8pt'>{key}</span>")
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
    """Presets and a time budget first, the raw settings under Advanced; Start/Stop/Resume; live view."""

    status = Signal(str)
    run_finished = Signal(str)   # run folder with a generator.keras

    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.dataset = ""
        self.runner: JobHandle | None = None
        self.checkpoint_note = ""
        self._stopping = False

        self.run_edit = QLineEdit(settings.value("train/run", str(Path.home() / "cxr-runs" / "run-1"), type=str))
        self.run_edit.setToolTip("The folder this run keeps everything in: settings, curves, checkpoints, samples "
                                 "and the trained generator")
        self.run_edit.editingFinished.connect(self.load_run)
        browse_run = QToolButton(text="…", toolTip="Choose the run folder")
        browse_run.clicked.connect(self._choose_run)
        self.cache_edit = QLineEdit(placeholderText="the open dataset")
        self.cache_edit.setToolTip("Training images: empty = the open dataset, with the classes ticked below "
                                   "(prepared once into the run folder); or a prepared cache folder")
        self.class_boxes: dict[str, QCheckBox] = {}
        for name in NIH_LABELS:
            box = QCheckBox(name.replace("_", " "))
            box.setChecked(name in DEFAULT_CLASSES)
            box.setToolTip("Train on images whose only finding is this one")
            self.class_boxes[name] = box

        self.preset_group = QButtonGroup(self)
        self.preset_buttons: dict[str, QRadioButton] = {}
        self.preset_notes: dict[str, QLabel] = {}
        for preset in PRESETS:
            button = QRadioButton(f"{preset.name} — about {preset.minutes:g} min")
            button.setToolTip(preset.description)
            self.preset_group.addButton(button)
            self.preset_buttons[preset.name] = button
            note = QLabel()
            note.setWordWrap(True)
            note.setObjectName("hint")
            self.preset_notes[preset.name] = note
            button.toggled.connect(lambda on, p=preset: on and self._preset_chosen(p))
        self.budget = QDoubleSpinBox(minimum=0.5, maximum=24 * 60, decimals=1, singleStep=1.0, suffix=" min")
        self.budget.setToolTip("Training stops by itself when this time is used up (a checkpoint and the "
                               "generator are saved); Resume trains for another budget")
        self.budget.valueChanged.connect(self._update_estimates)
        self.form = ConfigForm(TrainConfig, skip=FORM_SKIP)
        self.advanced = QGroupBox("Advanced settings")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self.advanced.toggled.connect(self.form.setVisible)
        self.form.setVisible(False)

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primaryButton")
        self.start_button.setToolTip("Start a new run in the run folder (Ctrl+Return)")
        self.start_button.setShortcut(QKeySequence("Ctrl+Return"))  # active while the Train tab shows
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run from its last checkpoint for another time budget")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint and the generator")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.board_button = QPushButton("Open in TensorBoard")
        self.board_button.setToolTip("Follow this run in TensorBoard, in your web browser")
        self.board_button.clicked.connect(self.open_tensorboard)
        self.board_button.setVisible(importlib.util.find_spec("tensorboard") is not None)
        self._board: QProcess | None = None
        self.stage = QLabel("")
        self.stage.setObjectName("stage")
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.eta = QLabel("")
        self.eta.setMinimumWidth(200)

        self.plots = LivePlots()
        self.quality = QualityPlot()
        self.samples = QLabel("Samples appear here during training:\none row per class")
        self.samples.setAlignment(Qt.AlignCenter)
        self.samples.setMinimumSize(260, 200)
        self.samples.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)   # the grid must not push the plots
        self.samples.setObjectName("sampleGrid")
        self._sample_image: QImage | None = None
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(2000)
        self.log.setObjectName("logPane")

        self._build_layout(browse_run)
        self.preset_buttons[settings.value("train/preset", "Standard", type=str)
                            if settings.value("train/preset", "Standard", type=str) in self.preset_buttons
                            else "Standard"].setChecked(True)
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
        source_layout.addWidget(QLabel("Training images"))
        source_layout.addWidget(self.cache_edit)
        source_layout.addWidget(QLabel("Classes"))
        grid = QGridLayout()
        grid.setVerticalSpacing(2)
        for i, box in enumerate(self.class_boxes.values()):
            grid.addWidget(box, i // 2, i % 2)
        source_layout.addLayout(grid)

        how = QGroupBox("How long and how good")
        how_layout = QVBoxLayout(how)
        for preset in PRESETS:
            how_layout.addWidget(self.preset_buttons[preset.name])
            how_layout.addWidget(self.preset_notes[preset.name])
        budget_row = QHBoxLayout()
        budget_row.addWidget(QLabel("Time budget"))
        budget_row.addWidget(self.budget, 1)
        how_layout.addLayout(budget_row)

        advanced_layout = QVBoxLayout(self.advanced)
        advanced_layout.addWidget(self.form)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        left_layout.addWidget(source)
        left_layout.addWidget(how)
        left_layout.addWidget(self.advanced)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(360)
        scroll.setMaximumWidth(440)

        buttons = QHBoxLayout()
        for button in (self.start_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        buttons.addWidget(self.stage)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.eta)
        buttons.addWidget(self.board_button)
        bottom = QSplitter(Qt.Horizontal)
        bottom.addWidget(self.samples)
        bottom.addWidget(self.log)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        top = QSplitter(Qt.Horizontal)
        top.addWidget(self.plots)
        top.addWidget(self.quality)
        top.setStretchFactor(0, 2)
        top.setStretchFactor(1, 1)
        top.setSizes([2000, 1000])   # three plots of about equal width
        right_split = QSplitter(Qt.Vertical)
        right_split.addWidget(top)
        right_split.addWidget(bottom)
        right_split.setStretchFactor(0, 2)
        right_split.setStretchFactor(1, 3)
        bottom.setSizes([3000, 2000])       # initial shares, whatever size the first sample grid has
        right_split.setSizes([1000, 1000])
        for splitter in (bottom, right_split):
            splitter.splitterMoved.connect(self._rescale_samples)
        right = QVBoxLayout()
        right.addLayout(buttons)
        right.addWidget(right_split, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll)
        layout.addLayout(right, 1)

    # ---- TensorBoard
    def open_tensorboard(self) -> None:
        """Start TensorBoard on the run folder (once per window) and open it in the browser."""
        paths = RunPaths(Path(self.run_edit.text().strip()))
        if not paths.board.is_dir():
            QMessageBox.information(self, "TensorBoard", "This run has no TensorBoard logs yet: start training first.")
            return
        if self._board is not None:
            self._board.kill()
            self._board.waitForFinished(3000)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._board = QProcess(self)
        self._board.start(sys.executable, ["-m", "tensorboard.main", "--logdir", str(paths.root),
                                           "--host", "127.0.0.1", "--port", str(port)])
        url = QUrl(f"http://127.0.0.1:{port}/")
        QTimer.singleShot(4000, lambda: QDesktopServices.openUrl(url))
        self.append_log(f"TensorBoard: {url.toString()} (opens in your browser in a few seconds)")

    def closeEvent(self, event) -> None:
        if self._board is not None:
            self._board.kill()
        super().closeEvent(event)

    # ---- presets
    def _preset_chosen(self, preset) -> None:
        self.settings.setValue("train/preset", preset.name)
        self.form.set_values({k: v for k, v in apply_preset(TrainConfig(), preset).to_json().items()
                              if k in self.form.editors})
        self.budget.setValue(preset.minutes)
        self._update_estimates()

    def chosen_preset(self):
        for name, button in self.preset_buttons.items():
            if button.isChecked():
                return preset_named(name)
        return PRESETS[1]

    def _measured_speed(self, size: int) -> float | None:
        value = self.settings.value(f"train/images_per_s/{size}", 0.0, type=float)
        return value or None

    def _update_estimates(self) -> None:
        """What each preset buys on this machine, from the speed the last run here reached at that size."""
        for preset in PRESETS:
            config = apply_preset(TrainConfig(), preset)
            minutes = self.budget.value() if self.preset_buttons[preset.name].isChecked() else preset.minutes
            steps = estimated_steps(minutes, self._measured_speed(config.size), config.batch)
            self.preset_notes[preset.name].setText(
                f"{preset.description} " + (f"On this machine about {steps:,} steps in {minutes:g} min."
                                             if steps else "Speed on this machine not measured yet."))

    # ---- inputs
    def set_dataset(self, root) -> None:
        self.dataset = str(root)

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", self.run_edit.text())
        if folder:
            self.run_edit.setText(folder)
            self.load_run()

    def checked_classes(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.class_boxes.items() if box.isChecked())

    def set_checked_classes(self, names) -> None:
        for name, box in self.class_boxes.items():
            box.setChecked(name in names)

    def load_run(self) -> None:
        """Show an existing run: its settings, curves and latest sample grid (for Resume)."""
        paths = RunPaths(Path(self.run_edit.text()))
        self.plots.clear()
        self.quality.clear()
        exists = paths.config.exists()
        self.resume_button.setEnabled(exists and self.runner is None)
        if not exists:
            return
        try:
            saved = TrainConfig.load(paths.config)
        except UserError as error:
            self.append_log(plain(str(error)))
            return
        self.form.set_values({f.name: getattr(saved, f.name) for f in fields(saved) if f.name in self.form.editors})
        self.cache_edit.setText(saved.data if saved.data != self.dataset else "")
        self.set_checked_classes(saved.classes)
        if saved.minutes > 0:
            self.budget.setValue(saved.minutes)
        rows = read_metrics(paths.metrics)
        for row in rows:
            self.plots.add(row)
        last = rows[-1].get("step", 0) if rows else 0
        checkpoint = paths.latest_checkpoint()
        self.log.clear()
        self.append_log(f"{paths.root}: trained to step {last}; "
                        + (f"Resume continues from its checkpoint ({checkpoint.name})." if checkpoint
                           else "no checkpoint yet, so Resume starts it again."))
        self._load_quality(paths)
        samples = sorted(paths.samples.glob("step_*.png")) if paths.samples.is_dir() else []
        if samples:
            self._show_grid_image(QImage(str(samples[-1])))

    def _load_quality(self, paths: RunPaths, resumed: bool = False) -> None:
        """Show the run's saved live quality (RUN/quality.jsonl). On Resume, only up to the checkpoint the
        run continues from: the steps after it are measured again."""
        events, notice = read_quality(paths.quality)
        if resumed:
            checkpoint = paths.latest_checkpoint()
            up_to = int(checkpoint.stem.split("_")[-1]) if checkpoint else -1
            events = [event for event in events if event["step"] <= up_to]
        self.quality.clear()
        for event in events:
            self.quality.add(event)
        if notice:
            self.append_log(plain(notice))

    def build_config(self, resume: bool) -> TrainConfig:
        """The TrainConfig of the user's choices: the form's fields, the time budget, the run folder,
        the data and the classes."""
        values = self.form.values()
        values["minutes"] = float(self.budget.value())
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
        if not resume and not self._may_start_new_run():
            return
        try:
            config = self.build_config(resume)
            config.validate()
        except (UserError, ValueError, TypeError) as error:
            self._fail(str(error))
            return
        self.settings.setValue("train/run", config.run)
        if resume:
            self.append_log("")
            self._load_quality(RunPaths(Path(config.run)), resumed=True)
        else:
            self.plots.clear()
            self.quality.clear()
            self.log.clear()
        self.append_log(f"{'resuming' if resume else 'starting'} {config.run} "
                        f"(time budget {config.minutes:g} min)")
        self._stopping = False
        self.runner = start_job("train", config, min_interval=0.25)
        self.runner.progress.connect(self._progress)
        self.runner.metrics.connect(self._metrics)
        self.runner.samples.connect(lambda sample: self._show_grid(sample.grid))
        self.runner.quality.connect(self.quality.add)
        self.runner.log.connect(self.append_log)
        self.runner.finished.connect(self._finished)
        self.runner.cancelled.connect(self._cancelled)
        self.runner.failed.connect(self._fail)
        self.runner.done.connect(self._done)
        self._set_running(True)
        self.stage.setText("Starting…")

    def _may_start_new_run(self) -> bool:
        """Before anything is prepared or cleared: a folder that already holds a trained run is the user's
        work. Offer to resume it or to start the new run in a fresh folder."""
        paths = RunPaths(Path(self.run_edit.text().strip()))
        checkpoint = paths.latest_checkpoint() if self.run_edit.text().strip() else None
        if checkpoint is None:
            return True
        step = int(checkpoint.stem.split("_")[-1])
        fresh = _next_free_folder(paths.root)
        box = QMessageBox(QMessageBox.Question, "This run folder is in use",
                          f"{paths.root} already holds a run trained to step {step:,}.\n\n"
                          f"Continue that run, or start the new one in {fresh.name} beside it?", parent=self)
        resume = box.addButton("Continue that run", QMessageBox.AcceptRole)
        new = box.addButton(f"New run in {fresh.name}", QMessageBox.ActionRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        if box.clickedButton() is resume:
            self.start(resume=True)
        elif box.clickedButton() is new:
            self.run_edit.setText(str(fresh))
            self.plots.clear()
            self.quality.clear()
            return True
        return False

    def stop(self) -> None:
        if self.runner is not None:
            self._stopping = True
            self.append_log("Stopping: finishing the current step, then saving a checkpoint and the generator…")
            self.stage.setText("Stopping…")
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
        for widget in (self.form, self.run_edit, self.cache_edit, self.budget, *self.class_boxes.values(),
                       *self.preset_buttons.values()):
            widget.setEnabled(not running)

    def _progress(self, progress) -> None:
        if self._stopping:
            return
        self.stage.setText(STAGE_WORDS.get(progress.stage, progress.stage.capitalize()))
        self.progress.setMaximum(max(1, progress.total))
        self.progress.setValue(progress.done)
        if progress.stage == "compiling":
            self.eta.setText("the first step takes a while")
        elif progress.stage == "saving":
            self.eta.setText("")
        else:
            unit = "steps" if progress.stage in ("guide", "training") else "images"
            self.eta.setText(f"{progress.done:,}/{progress.total:,} {unit}  "
                             f"ETA {format_duration(progress.eta_seconds)}")

    def _metrics(self, row: dict) -> None:
        self.plots.add(row)
        if row.get("images_per_s"):
            size = self.form.values().get("size")
            self.settings.setValue(f"train/images_per_s/{size}", float(row["images_per_s"]))

    def _show_grid(self, grid: np.ndarray) -> None:
        grid = np.ascontiguousarray(grid)
        height, width = grid.shape
        self._show_grid_image(QImage(grid.data, width, height, width, QImage.Format_Grayscale8).copy())

    def _show_grid_image(self, image: QImage) -> None:
        self._sample_image = image
        self._rescale_samples()

    def _rescale_samples(self, *_moved) -> None:
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
            self.append_log(f"Stopped: {message}")
            self.checkpoint_note = "stopped before training began"
            return
        self._finished(summary)

    def _finished(self, summary) -> None:
        state = {"stopped": "stopped", "time budget": "used its time budget"}.get(summary.reason, "finished")
        self.checkpoint_note = f"{state} at step {summary.step:,}" + (
            f"/{summary.total_steps:,}" if summary.reason != "time budget" else "")
        self.append_log(f"Training {self.checkpoint_note} ({summary.images_per_s:.1f} images/s); "
                        f"checkpoint and generator saved in {summary.run_dir}")
        self.status.emit(f"Training {self.checkpoint_note}")
        if summary.generator:
            self.run_finished.emit(summary.run_dir)

    def _fail(self, message: str) -> None:
        message = plain(message)
        self.append_log(f"error: {message}")
        self.status.emit(message)
        QMessageBox.warning(self, "Training", message)

    def _done(self) -> None:
        self.runner = None
        self._stopping = False
        self.stage.setText(self.checkpoint_note.capitalize() if self.checkpoint_note else "")
        self.eta.setText("")
        self._set_running(False)


def _next_free_folder(path: Path) -> Path:
    """`run-1` -> `run-2` (or `name-2`), the first that does not exist yet."""
    stem, _, number = path.name.rpartition("-")
    base, n = (stem, int(number)) if stem and number.isdigit() else (path.name, 1)
    while True:
        n += 1
        candidate = path.with_name(f"{base}-{n}")
        if not candidate.exists():
            return candidate
