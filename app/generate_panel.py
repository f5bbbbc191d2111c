"""The Generate tab: open a trained run, choose classes, counts and a seed, preview a grid, export.

Opening a run reads its files (no TensorFlow); the preview and the export are core's "preview" and
"export" tasks run by `app.workers.start_job` in a child process, so TensorFlow never stalls the window.
The export writes into a hidden folder and renames it into place, so a stopped export leaves nothing
half-written.

Counts and recipe default to "recommended" (what won the run's augmentation bench, see
`core.export.export.ExportConfig`); counts can be set by hand instead. The run's latest bench verdict is
shown above Export, with a warning (not a block) when it is not "helps" or no bench was run; core
records the verdict in the export's manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QRadioButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from app.messages import plain
from app.verdict_banner import VerdictBanner, verdict_key
from app.workers import JobHandle, start_job
from core.errors import UserError
from core.export.preview import PREVIEW_COLUMNS, PreviewConfig, describe_run
from core.jobs import format_duration

RECOMMENDED = "recommended"


def _export_option(name: str) -> dict:
    """The help text and choices of an ExportConfig field (the one source of the export's options)."""
    from dataclasses import fields

    from core.export.export import ExportConfig

    return next(f.metadata for f in fields(ExportConfig) if f.name == name)


def below_bar_note(screening: dict) -> str:
    """In plain words, which classes the screening recipe had to top up with images below its bar, and how
    many ('' when every image passed or nothing was screened). `screening` is the export's
    `ExportResult.screening` (per class: wanted, passed, below_bar; see `core.evaluation.recipe.draw`)."""
    below = [(name, stats["below_bar"], stats["wanted"]) for name, stats in screening.get("per_class", {}).items()
             if stats.get("below_bar")]
    if not below:
        return ""
    counts = ", ".join(f"{name}: {n:,} of {wanted:,}" for name, n, wanted in below)
    return (f"Some images did not pass the quality screening ({counts}): the generator drew too few that the judge "
            f"trained on your real images confidently recognises as their finding, so these classes were filled up "
            f"with the most convincing of the rest (none is a near-copy of a training image). Look at them before "
            f"relying on them, or ask for fewer images of these classes.")


class GeneratePanel(QWidget):
    status = Signal(str)

    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.generator: dict | None = None
        self.runner: JobHandle | None = None
        self._grid: QImage | None = None

        self.run_edit = QLineEdit(settings.value("generate/run", "", type=str),
                                  placeholderText="a run folder holding generator.keras")
        choose = QToolButton(text="…", toolTip="Choose a trained run folder")
        choose.clicked.connect(self._choose_run)
        self.load_button = QPushButton("Open run")
        self.load_button.setToolTip("Read the run's classes and model; preview and export load generator.keras "
                                    "in safe mode (no code from the file runs)")
        self.load_button.clicked.connect(self.load_run)
        self.model_info = QLabel("No generator loaded")
        self.model_info.setWordWrap(True)

        self.counts = QTableWidget(0, 2)
        self.counts.setHorizontalHeaderLabels(["Class", "Images to export"])
        self.counts.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.counts.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.counts.verticalHeader().setVisible(False)
        self.counts.setToolTip("Tick the classes to preview and export; set how many images of each")
        self.counts_recommended = QRadioButton("Recommended counts")
        self.counts_recommended.setToolTip(plain(_export_option("counts")["help"]))
        self.counts_by_hand = QRadioButton("Set counts by hand")
        self.counts_by_hand.setToolTip("Tick the classes and give each the number of images to export")
        self._counts_mode = QButtonGroup(self)
        for button in (self.counts_recommended, self.counts_by_hand):
            self._counts_mode.addButton(button)
        self.counts_recommended.setChecked(True)
        self.counts_by_hand.toggled.connect(self._counts_mode_changed)
        self.counts_note = QLabel("")
        self.counts_note.setWordWrap(True)
        self.counts_note.setObjectName("hint")
        self.recipe = QComboBox()
        self.recipe.addItems(list(_export_option("recipe")["choices"]))
        self.recipe.setCurrentText(RECOMMENDED)
        self.recipe.setToolTip(plain(_export_option("recipe")["help"]))
        self.banner = VerdictBanner(bench_is_elsewhere=True)
        self.verdict: dict = {"verdict": "not_run"}
        self.seed = QSpinBox(minimum=0, maximum=2_000_000_000, value=0)
        self.seed.setToolTip("Seed of the latent vectors: the same seed gives the same images")
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(f"Draw {PREVIEW_COLUMNS} images of each ticked class")
        self.preview_button.clicked.connect(self.preview)

        self.out_edit = QLineEdit(settings.value("generate/out", str(Path.home() / "cxr-synthetic"), type=str))
        choose_out = QToolButton(text="…", toolTip="Choose the export folder")
        choose_out.clicked.connect(self._choose_out)
        self.size = QSpinBox(minimum=0, maximum=4096, value=0, specialValueText="generator's own size")
        self.size.setToolTip("Side of the exported PNGs in pixels (0 = the generator's size)")
        self.force = QCheckBox("Replace an earlier export in that folder")
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("primaryButton")
        self.export_button.setToolTip("Write the images, Data_Entry_2017.csv and manifest.json in NIH layout")
        self.export_button.clicked.connect(self.export)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(lambda: self.runner and self.runner.request_stop())
        self.progress = QProgressBar()
        self.eta = QLabel("")
        self.eta.setWordWrap(True)
        self.set_all = QSpinBox(minimum=0, maximum=1_000_000, value=100)
        self.set_all.setToolTip("Give every ticked class this many images")
        set_all_button = QPushButton("Set all")
        set_all_button.clicked.connect(self._set_all)
        self._set_all_button = set_all_button
        self.total = QLabel("")
        self.open_folder_button = QPushButton("Open export folder")
        self.open_folder_button.setToolTip("Show the exported images in your file manager")
        self.open_folder_button.clicked.connect(self._open_export_folder)
        self.open_folder_button.setEnabled(False)

        self.preview_label = QLabel("Open a trained run, then Preview")
        self.preview_label.setAlignment(Qt.AlignCenter)
        self.preview_label.setObjectName("sampleGrid")
        self.preview_label.setMinimumSize(300, 300)
        self._build_layout(choose, choose_out)
        self._set_busy(False)
        self._counts_mode_changed()

    def _build_layout(self, choose, choose_out) -> None:
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_edit, 1)
        run_row.addWidget(choose)
        run_row.addWidget(self.load_button)
        run_box = QGroupBox("Trained run")
        run_layout = QVBoxLayout(run_box)
        run_layout.addLayout(run_row)
        run_layout.addWidget(self.model_info)

        choose_box = QGroupBox("Classes, counts and seed")
        choose_layout = QVBoxLayout(choose_box)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.counts_recommended)
        mode_row.addWidget(self.counts_by_hand)
        choose_layout.addLayout(mode_row)
        choose_layout.addWidget(self.counts_note)
        choose_layout.addWidget(self.counts, 1)
        all_row = QHBoxLayout()
        all_row.addWidget(self.set_all, 1)
        all_row.addWidget(self._set_all_button)
        all_row.addWidget(self.total)
        choose_layout.addLayout(all_row)
        seed_row = QHBoxLayout()
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.preview_button)
        choose_layout.addLayout(seed_row)

        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(choose_out)
        export_box = QGroupBox("Export in NIH format")
        export_form = QFormLayout(export_box)
        export_form.addRow(self.banner)
        export_form.addRow("Folder", out_row)
        export_form.addRow("Recipe", self.recipe)
        export_form.addRow("Image size", self.size)
        export_form.addRow("", self.force)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.open_folder_button)
        export_form.addRow(buttons)
        export_form.addRow(self.progress)
        export_form.addRow(self.eta)

        left = QVBoxLayout()
        left.addWidget(run_box)
        left.addWidget(choose_box, 1)
        left.addWidget(export_box)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setFixedWidth(460)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(left_widget)
        layout.addWidget(self.preview_label, 1)

    # ---- run
    def suggest_run(self, run: str) -> None:
        """A training run just saved a generator: load it here (unless an export is running)."""
        self.run_edit.setText(run)
        if self.runner is None:
            self.load_run()

    def _spins(self) -> list[QSpinBox]:
        return [self.counts.cellWidget(row, 1) for row in range(self.counts.rowCount())]

    def _counts_mode_changed(self) -> None:
        by_hand = self.counts_by_hand.isChecked()
        spins = self._spins()
        for spin in spins:
            spin.setEnabled(by_hand)
            spin.setSpecialValueText("")
        if by_hand and spins and not any(spin.value() for spin in spins):
            for spin in spins:       # coming from "recommended" without a bench: start from "Set all"
                spin.setValue(self.set_all.value())
        self.set_all.setEnabled(by_hand)
        self._set_all_button.setEnabled(by_hand)
        self._show_recommended()
        self._update_total()

    def _recommended_counts(self) -> dict[str, int] | None:
        """The counts the run's latest augmentation bench recommends (None without a bench)."""
        counts = (self.verdict.get("recommended") or {}).get("counts") or {}
        return {name: int(n) for name, n in counts.items()} if any(counts.values()) else None

    def _show_recommended(self) -> None:
        """With recommended counts, the table shows them (read-only) and a note says where they come from."""
        if self.counts_by_hand.isChecked() or self.generator is None:
            self.counts_note.setText("")
            return
        counts = self._recommended_counts()
        if counts is None:
            self.counts_note.setText("No augmentation bench yet: every class is topped up to the number of "
                                     "training images of the largest class (computed at export).")
            for spin in self._spins():
                spin.setSpecialValueText("top-up")
                spin.setValue(0)
        else:
            self.counts_note.setText(f"From the augmentation bench of {self.verdict.get('created') or '?'}: the "
                                     "counts that topped the rare classes up best.")
            for row in range(self.counts.rowCount()):
                name = self.counts.item(row, 0).text()
                self.counts.cellWidget(row, 1).setValue(counts.get(name, 0))

    def _set_all(self) -> None:
        for row in range(self.counts.rowCount()):
            if self.counts.item(row, 0).checkState() == Qt.Checked:
                self.counts.cellWidget(row, 1).setValue(self.set_all.value())
        self._update_total()

    def _update_total(self) -> None:
        if self.counts_recommended.isChecked() and self._recommended_counts() is None:
            self.total.setText("")
            return
        total = sum(self.chosen_counts().values())
        self.total.setText(f"total {total:,} images")

    def _open_export_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.out_edit.text().strip()))

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Trained run folder", self.run_edit.text())
        if folder:
            self.run_edit.setText(folder)
            self.load_run()

    def _choose_out(self) -> None:
        folder, _ = QFileDialog.getSaveFileName(self, "Export folder (created)", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def load_run(self) -> None:
        run = self.run_edit.text().strip()
        if not run:
            self._fail("Generate: choose a run folder")
            return
        try:
            info = describe_run(run)
        except UserError as error:
            self._forget_run()
            self._fail(str(error))
            return
        self._loaded(info)

    def _forget_run(self) -> None:
        """After a failed Open run nothing of the previous run may stay usable (it would export the wrong model)."""
        self.generator = None
        self.counts.setRowCount(0)
        self._grid = None
        self.preview_label.clear()
        self.preview_label.setText("Open a trained run, then Preview")
        self.model_info.setText("No generator loaded")
        self._show_verdict({"verdict": "not_run"})
        self._set_busy(self.runner is not None)

    def _loaded(self, info: dict) -> None:
        self.generator = info
        self.settings.setValue("generate/run", info["run_dir"])
        trained = f"trained to step {info['trained_steps']:,}"
        if info.get("planned_steps") and info["trained_steps"] < info["planned_steps"] < 1_000_000:
            trained += f" of {info['planned_steps']:,} planned"
        self.model_info.setText(f"{Path(info['run_dir']).name}: {len(info['classes'])} classes, "
                                f"{info['size']}x{info['size']} px, {trained}; model sha256 {info['sha256'][:10]}")
        self.counts.setRowCount(len(info["classes"]))
        for row, name in enumerate(info["classes"]):
            item = QTableWidgetItem(name)
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            self.counts.setItem(row, 0, item)
            spin = QSpinBox(minimum=0, maximum=1_000_000, value=100)
            spin.valueChanged.connect(self._update_total)
            self.counts.setCellWidget(row, 1, spin)
        from core.evaluation.verdict import latest_verdict

        self._show_verdict(latest_verdict(info["run_dir"]))
        self._counts_mode_changed()
        self._set_busy(False)

    def _show_verdict(self, verdict: dict) -> None:
        self.verdict = verdict
        self.banner.show_verdict(verdict)

    def export_warning(self) -> str:
        """What the user should know before exporting ('' when the bench found that the images help)."""
        key = verdict_key(self.verdict)
        if key == "helps":
            return ""
        if key == "not_run":
            return ("No augmentation bench has been run for this model: nobody knows yet whether these images help "
                    "a classifier.")
        return f"The augmentation bench found that these synthetic images are {self.verdict.get('label', key)}."

    def chosen_counts(self) -> dict[str, int]:
        return {self.counts.item(r, 0).text(): self.counts.cellWidget(r, 1).value()
                for r in range(self.counts.rowCount()) if self.counts.item(r, 0).checkState() == Qt.Checked}

    # ---- preview and export
    def preview(self) -> None:
        classes = list(self.chosen_counts())
        if self.generator is None or not classes:
            self._fail("Generate: open a run and tick at least one class")
            return
        self._start("preview", PreviewConfig(run=self.generator["run_dir"], classes=classes, seed=self.seed.value()),
                    on_finished=self._show_preview)
        if self._grid is None:
            self.preview_label.setText("Drawing the preview (loading the generator takes a few seconds)…")

    def _show_preview(self, grid: np.ndarray) -> None:
        grid = np.ascontiguousarray(grid)
        height, width = grid.shape
        self._grid = QImage(grid.data, width, height, width, QImage.Format_Grayscale8).copy()
        self._rescale()

    def _rescale(self) -> None:
        if self._grid is not None:
            self.preview_label.setPixmap(QPixmap.fromImage(self._grid).scaled(
                self.preview_label.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()

    def export(self) -> None:
        from core.export.export import ExportConfig

        recommended = self.counts_recommended.isChecked()
        counts = RECOMMENDED if recommended else {name: n for name, n in self.chosen_counts().items() if n > 0}
        if self.generator is None or not counts:
            self._fail("Generate: open a run and give at least one class a count above 0")
            return
        out = self.out_edit.text().strip()
        self.settings.setValue("generate/out", out)
        config = ExportConfig(run=self.generator["run_dir"], out=out, counts=counts, seed=self.seed.value(),
                              recipe=self.recipe.currentText(), size=self.size.value(), force=self.force.isChecked())
        warning = self.export_warning()
        if warning:
            self.status.emit(f"Exporting anyway. {warning}")
        self._start("export", config, on_finished=self._exported)
        if warning:
            self.eta.setText(f"Exporting. Note: {warning}")

    def _exported(self, result) -> None:
        done = f"Exported {result.images:,} images to {result.out} in {result.seconds:.1f} s."
        message = " ".join(part for part in (done, self.export_warning(), below_bar_note(result.screening)) if part)
        self.eta.setText(message)
        self.eta.setToolTip(message)
        self.open_folder_button.setEnabled(True)
        self.status.emit(message)

    # ---- plumbing
    def _start(self, task: str, config, on_finished) -> None:
        if self.runner is not None:
            return
        self.runner = start_job(task, config)
        self.runner.progress.connect(self._progress)
        self.runner.finished.connect(on_finished)
        self.runner.failed.connect(self._fail)
        self.runner.cancelled.connect(lambda message, _: self.eta.setText("Stopped; nothing was written"))
        self.runner.done.connect(self._done)
        self._set_busy(True)

    def _done(self) -> None:
        self.runner = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        loaded = self.generator is not None
        self.load_button.setEnabled(not busy)
        self.preview_button.setEnabled(not busy and loaded)
        self.export_button.setEnabled(not busy and loaded)
        self.stop_button.setEnabled(busy)

    def _progress(self, progress) -> None:
        self.progress.setMaximum(max(1, progress.total))
        self.progress.setValue(progress.done)
        self.eta.setText(f"{progress.done:,}/{progress.total:,} {progress.message}  "
                         f"ETA {format_duration(progress.eta_seconds)}")

    def _fail(self, message: str) -> None:
        message = plain(message)
        self.status.emit(message)
        if self.generator is None:
            self.model_info.setText("No generator loaded")
        QMessageBox.warning(self, "Generate", message)

    def stop_and_wait(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
            self.runner.wait()
