"""The Evaluate tab: does the run's generator make useful images? The verdict first, then the evidence.

The panel gathers the user's choices into core's config dataclasses, starts core's "evaluate" or
"augment-bench" task with `app.workers.start_job` (in a child process) and shows what comes back: the
verdict of the run's latest augmentation bench as a coloured banner, the numbers with a plain-language
tooltip for every measure, the matplotlib plots core wrote into RUN/evaluation (scaled to the window),
real images beside generated ones, the generated images nearest to a training image with its patient
id, and the self-contained report.html to open or save. Opening a run shows its saved results at once.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QScrollArea, QSizePolicy, QSpinBox, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from app.messages import plain
from app.verdict_banner import VerdictBanner
from app.workers import JobHandle, start_job
from core.jobs import format_duration

# What each measure means, for someone who reads classifier papers rather than GAN papers.
MEASURE_TIPS = {
    "class": "The finding the generator was asked to draw ('overall': all classes together).",
    "eval acc": "Judge accuracy: the share of held-out REAL images of this class that the judge classifier "
                "(trained on your real training images) recognises. It is the ceiling for 'cond acc': the "
                "judge cannot recognise generated images better than real ones.",
    "cond acc": "Conditional accuracy: the share of GENERATED images of this class that the judge recognises as "
                "this class. Near 'eval acc' = the images show their finding as clearly as real ones; near "
                "chance (1 / number of classes) = the label is ignored.",
    "FD": "Fréchet distance between generated and real training images in the judge's features. Lower is "
          "better; read it against 'FD real'.",
    "FD real": "The same distance between held-out real images (other patients) and the training images: the "
               "floor a perfect generator would reach with this many images.",
    "FD ratio": "FD / FD real. 1 = generated images are as close to the training images as other real patients "
                "are; 2 = twice as far. Under about 1.5 is good.",
    "precision": "Precision (Naeem et al. 2020): the share of generated images that look like some real image "
                 "(realism). Low = many implausible images.",
    "recall": "Recall: the share of real images that some generated image resembles (variety). Low = the "
              "generator covers only part of the real appearance.",
    "coverage": "Coverage: the share of real images with a generated image close by. The most robust of the "
                "four; compare with the held-out real reference in the plots.",
    "MS-SSIM gen": "How alike generated images of one class are to each other (0 = all different, 1 = identical). "
                   "Far above 'MS-SSIM real' = the generator repeats itself (mode collapse).",
    "MS-SSIM real": "The same for real images of the class: the natural similarity to compare with.",
    "copies": "Generated images that are near-copies of one training image (closer than almost any other "
              "patient's image is). A copy can re-identify the patient: see 'Nearest training images'.",
}
BENCH_ROW_TIPS = {
    "balanced accuracy": "Balanced accuracy: the mean of the per-class recalls on held-out real images, so "
                         "every finding counts equally however rare it is.",
    "macro AUC": "Macro AUC: the mean one-vs-rest ROC AUC over the classes (0.5 = chance, 1 = perfect ranking).",
    "recall, 3 rarest": "Rare-class recall: the mean recall of the three classes with the fewest training images, "
                        "where extra images should help most.",
    "gain vs control (SE)": "Gain in balanced accuracy over the duplicate control (real images with the rare "
                            "classes repeated to the same counts), paired per seed, ± its standard error. This is "
                            "what decides the verdict.",
}
RESULT_HINTS = {
    "bench": "No augmentation bench yet. Choose a run and click “Run augmentation bench”: it trains a classifier "
             "with and without the synthetic images and tells you whether they help.",
    "quality": "No quality evaluation yet. Choose a run and click “Evaluate image quality”.",
    "real_vs_synthetic": "Real training images beside generated ones appear here after “Evaluate image quality”.",
    "nearest": "Each class's generated images nearest to a training image (with its patient id) appear here "
               "after “Evaluate image quality”.",
    "plots": "Plots appear here after “Evaluate image quality” or “Run augmentation bench”.",
}
QUALITY_PLOTS = ("confusion", "accuracy", "prdc", "coverage", "diversity")
BENCH_PLOTS = ("bench_gain", "bench_accuracy", "bench_recall")


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


class ScaledImage(QLabel):
    """A PNG shown at the width it is given (never wider than the file), keeping its aspect ratio."""

    def __init__(self, parent=None):
        super().__init__(parent, alignment=Qt.AlignCenter)
        self._pixmap = QPixmap()
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)

    def set_file(self, path: Path) -> bool:
        self._pixmap = QPixmap(str(path))
        if self._pixmap.isNull():
            self.setText(f"{path.name}: no plot")
        self._rescale()
        return not self._pixmap.isNull()

    def has_image(self) -> bool:
        return not self._pixmap.isNull()

    def _rescale(self) -> None:
        if self._pixmap.isNull():
            return
        width = min(self.width(), self._pixmap.width())
        self.setPixmap(self._pixmap.scaledToWidth(max(width, 50), Qt.SmoothTransformation))

    def heightForWidth(self, width: int) -> int:
        if self._pixmap.isNull():
            return super().heightForWidth(width)
        width = min(width, self._pixmap.width())
        return int(self._pixmap.height() * width / self._pixmap.width())

    def hasHeightForWidth(self) -> bool:
        return not self._pixmap.isNull()

    def sizeHint(self) -> QSize:
        return self._pixmap.size() if not self._pixmap.isNull() else super().sizeHint()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()


class ResultPage(QStackedWidget):
    """A result area: a hint of what to do while empty (page 0), the content once there is some (page 1)."""

    def __init__(self, hint: str, *widgets: QWidget, scroll: bool = False):
        super().__init__()
        self.hint = QLabel(hint, wordWrap=True, alignment=Qt.AlignCenter)
        self.hint.setObjectName("hint")
        self.hint.setMargin(40)
        self.addWidget(self.hint)
        content = QWidget()
        layout = QVBoxLayout(content)
        for widget in widgets:
            layout.addWidget(widget)
        if scroll:
            layout.addStretch(1)
            area = QScrollArea(widgetResizable=True)
            area.setWidget(content)
            content = area
        self.addWidget(content)

    def set_filled(self, filled: bool) -> None:
        self.setCurrentIndex(1 if filled else 0)

    def is_filled(self) -> bool:
        return self.currentIndex() == 1


class EvaluatePanel(QWidget):
    """Choose a run and real data, evaluate or benchmark, read the verdict, the numbers and the plots."""

    error = Signal(str)
    report_ready = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._runner: JobHandle | None = None
        self.run_edit = QLineEdit(placeholderText="run folder with generator.keras")
        self.data_edit = QLineEdit(placeholderText="prepared cache or NIH folder (empty: the run's training cache)")
        self._shown_run = ""
        self.run_edit.editingFinished.connect(self._run_typed)
        self.n_spin = self._spin(2, 20000, 500, "Evaluate image quality: generated images per class. (The "
                                 "augmentation bench generates as many as it needs to top each class up to the "
                                 "largest one.)")
        self.steps_spin = self._spin(10, 100000, 800, "Training steps of each classifier (the judge, and every "
                                     "classifier of the augmentation bench)")
        self.seeds_spin = self._spin(1, 20, 3, "Augmentation bench: classifier seeds per arm; at least 2 for a "
                                     "verdict, more for a surer one")

        form = QFormLayout()
        form.addRow("Run", self._with_browse(self.run_edit, "Choose a run folder"))
        form.addRow("Real data", self._with_browse(self.data_edit, "Choose a prepared cache or an NIH folder"))
        numbers = QHBoxLayout()
        for label, spin in (("Images per class", self.n_spin), ("Classifier steps", self.steps_spin),
                            ("Seeds", self.seeds_spin)):
            numbers.addWidget(QLabel(label, toolTip=spin.toolTip()))
            numbers.addWidget(spin)
        numbers.addStretch(1)
        form.addRow(numbers)

        self.evaluate_button = QPushButton("Evaluate image quality")
        self.evaluate_button.setToolTip("How well the generated images show their class, how close they are to "
                                        "real ones, how varied, and whether any copies a training image")
        self.augment_button = QPushButton("Run augmentation bench")
        self.augment_button.setToolTip("Train a classifier with your real images, with repeated real images and "
                                       "with synthetic images added: do the synthetic images help?")
        self.stop_button = QPushButton("Stop", enabled=False)
        self.evaluate_button.clicked.connect(self.start_evaluation)
        self.augment_button.clicked.connect(self.start_augment_bench)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar(textVisible=True)
        self.eta = QLabel("")
        self.status = QLabel(wordWrap=True)
        buttons = QHBoxLayout()
        for widget in (self.evaluate_button, self.augment_button, self.stop_button):
            buttons.addWidget(widget)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.eta)

        self.banner = VerdictBanner()
        self.open_report_button = QPushButton("Open report", enabled=False)
        self.open_report_button.setToolTip("Open report.html (verdict, numbers, plots, run settings, data and "
                                           "software versions in one file) in your web browser")
        self.open_report_button.clicked.connect(self.open_report)
        self.save_report_button = QPushButton("Save report…", enabled=False)
        self.save_report_button.setToolTip("Save the report as one self-contained HTML file, e.g. for a paper's "
                                           "supplement or an ethics review")
        self.save_report_button.clicked.connect(self.save_report)
        verdict_row = QHBoxLayout()
        verdict_row.addWidget(self.banner, 1)
        report_buttons = QVBoxLayout()
        report_buttons.addWidget(self.open_report_button)
        report_buttons.addWidget(self.save_report_button)
        verdict_row.addLayout(report_buttons)

        self.augment_table = self._table()
        self.augment_summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.table = self._table()
        self.summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.copies_table = self._table()
        self.copies_note = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.plots: dict[str, ScaledImage] = {key: ScaledImage() for key in
                                              (*BENCH_PLOTS, *QUALITY_PLOTS, "real_vs_synthetic", "nearest")}
        self.pages = {
            "bench": ResultPage(RESULT_HINTS["bench"], self.augment_summary, self.augment_table,
                                *(self.plots[k] for k in BENCH_PLOTS), scroll=True),
            "quality": ResultPage(RESULT_HINTS["quality"], self.summary, self.table),
            "real_vs_synthetic": ResultPage(RESULT_HINTS["real_vs_synthetic"], self.plots["real_vs_synthetic"],
                                            scroll=True),
            "nearest": ResultPage(RESULT_HINTS["nearest"], self.copies_note, self.copies_table, self.plots["nearest"],
                                  scroll=True),
            "plots": ResultPage(RESULT_HINTS["plots"], *(self.plots[k] for k in QUALITY_PLOTS), scroll=True),
        }
        self.results = QTabWidget()
        for key, title in (("bench", "Does it help? (augmentation bench)"), ("quality", "Image quality"),
                           ("real_vs_synthetic", "Real beside synthetic"), ("nearest", "Nearest training images"),
                           ("plots", "Quality plots")):
            self.results.addTab(self.pages[key], title)

        layout = QVBoxLayout(self)
        layout.addLayout(verdict_row)
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
        table.setSizeAdjustPolicy(QTableWidget.AdjustToContents)
        return table

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
        """Point the panel at a run folder and show its verdict and any results it already has."""
        from core.evaluation.verdict import latest_verdict

        self._shown_run = str(path) if path else ""
        self.run_edit.setText(self._shown_run)
        for page in self.pages.values():
            page.set_filled(False)
        self.banner.show_verdict(latest_verdict(path) if path else None)
        folder = Path(path) / "evaluation" if path else None
        for name, show in (("report.json", self.show_report), ("augment_bench.json", self.show_augment_report)):
            if folder and (folder / name).is_file():
                try:
                    show(json.loads((folder / name).read_text(encoding="utf-8")), switch=False)
                except (OSError, ValueError, KeyError, TypeError) as error:
                    self.status.setText(f"{folder / name}: cannot show the saved report ({error})")
        self._update_report_buttons()
        self.results.setCurrentIndex(0 if self.pages["bench"].is_filled() or not self.pages["quality"].is_filled()
                                     else 1)

    def set_dataset(self, path) -> None:
        self.data_edit.setText(str(path) if path else "")

    def is_running(self) -> bool:
        return self._runner is not None

    # ---- the report
    def _evaluation_folder(self) -> Path | None:
        return Path(self._shown_run) / "evaluation" if self._shown_run else None

    def _has_results(self) -> bool:
        folder = self._evaluation_folder()
        return bool(folder) and any((folder / name).is_file() for name in ("report.json", "augment_bench.json"))

    def _update_report_buttons(self) -> None:
        has = self._has_results()
        self.open_report_button.setEnabled(has)
        self.save_report_button.setEnabled(has)

    def report_path(self) -> Path:
        """RUN/evaluation/report.html, written from the saved results if it is missing."""
        from core.evaluation.report import REPORT_HTML, write_report

        folder = self._evaluation_folder()
        path = folder / REPORT_HTML
        if not path.is_file():
            write_report(folder, run_dir=folder.parent)
        return path

    def open_report(self) -> None:
        if not self._has_results():
            return
        try:
            path = self.report_path()
        except OSError as error:
            self._fail(f"{self._evaluation_folder()}: cannot write report.html ({error})")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def save_report(self, target: str | None = None) -> Path | None:
        """Write the report, freshly built from the saved results, to a file the user chooses."""
        from core.atomic import atomic_write_text
        from core.evaluation.report import build_report

        if not self._has_results():
            return None
        if target is None:
            suggested = str(Path.home() / f"{Path(self._shown_run).name}-report.html")
            target, _ = QFileDialog.getSaveFileName(self, "Save report", suggested, "HTML (*.html)")
            if not target:
                return None
        folder = self._evaluation_folder()
        try:
            atomic_write_text(Path(target), build_report(folder, run_dir=folder.parent))
        except OSError as error:
            self._fail(f"{target}: cannot save the report ({error.strerror or error})")
            return None
        self.status.setText(f"Report saved to {target}")
        return Path(target)

    # ---- running
    def start_evaluation(self) -> None:
        from core.evaluation.evaluate import EvaluateConfig

        config = EvaluateConfig(run=self.run_edit.text().strip(), data=self.data_edit.text().strip(),
                                n=self.n_spin.value(), classifier_steps=self.steps_spin.value())
        self._start("evaluate", config, self.show_report, "Evaluating image quality")

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
        self._shown_run = config.run
        runner = start_job(task, config)
        runner.progress.connect(self._progress)
        runner.finished.connect(on_result)
        runner.finished.connect(lambda _: self.status.setText(f"{what}: done."))
        runner.cancelled.connect(lambda message, _: (self.status.setText(f"{what}: stopped; no report was written."),
                                                     self.progress.setValue(0)))
        runner.failed.connect(self._fail)
        runner.done.connect(self._finished)
        self._runner = runner
        self._set_busy(True)
        self.progress.setRange(0, 0)     # busy until the task's first report (starting TensorFlow takes a while)
        self.eta.setText("starting…")
        self.status.setText(f"{what}…")

    def _progress(self, progress) -> None:
        self.progress.setMaximum(max(progress.total, 1))
        self.progress.setValue(progress.done)
        self.progress.setFormat(f"%p%  {progress.message}" if progress.message else "%p%")
        self.eta.setText(f"{progress.done:,}/{progress.total:,}  ETA {format_duration(progress.eta_seconds)}")

    def _fail(self, message: str) -> None:
        message = plain(message)
        self.status.setText(message)
        self.error.emit(message)

    def _finished(self) -> None:
        self._runner = None
        self._set_busy(False)
        self._update_report_buttons()

    def _set_busy(self, busy: bool) -> None:
        self.evaluate_button.setEnabled(not busy)
        self.augment_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        if not busy:
            self.progress.setRange(0, max(self.progress.maximum(), 1))
            self.progress.setFormat("%p%")
            self.eta.setText("")

    # ---- showing results
    @staticmethod
    def _fill(table: QTableWidget, header: list[str], rows: list[list], header_tips: dict | None = None,
              row_tips: dict | None = None) -> None:
        table.clear()
        table.setColumnCount(len(header))
        table.setRowCount(len(rows))
        table.setHorizontalHeaderLabels(header)
        for c, name in enumerate(header):
            tip = (header_tips or {}).get(name)
            if tip:
                table.horizontalHeaderItem(c).setToolTip(tip)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(_cell(value))
                item.setTextAlignment(Qt.AlignVCenter | (Qt.AlignLeft if c == 0 else Qt.AlignRight))
                tip = (row_tips or {}).get(str(row[0])) if c == 0 else None
                if tip:
                    item.setToolTip(tip)
                table.setItem(r, c, item)

    def _show_plots(self, folder: Path, plots: dict, keys) -> int:
        shown = 0
        for key in keys:
            label = self.plots[key]
            if key in plots:
                shown += label.set_file(folder / plots[key])
            label.setVisible(key in plots)
        return shown

    def show_report(self, report: dict, switch: bool = True) -> None:
        from core.evaluation.evaluate import report_table

        self._fill(self.table, *report_table(report), header_tips=MEASURE_TIPS)
        cond, memo, ev = report["conditional_accuracy"], report["memorisation"], report["evaluator"]
        fd_ratio = report["frechet_distance"].get("ratio_overall")
        step = report.get("trained_step")
        self.summary.setText(
            f"{report['n_per_class']} generated images per class"
            + (f" from the generator at step {step:,}" if isinstance(step, int) else "")
            + f", judged by a classifier trained on your real training images. The judge recognises "
            f"{ev['held_out_accuracy'] * 100:.0f}% of held-out real images ({ev['held_out_images']} images) and "
            + (f"{cond['mean'] * 100:.0f}%" if cond["mean"] is not None else "-") + " of the generated ones "
            f"(chance {cond['chance'] * 100:.0f}%). Distance to the real images: {_cell(fd_ratio)} times that of "
            f"other real patients. Near-copies of training images: {memo['flagged']} of "
            f"{report['n_per_class'] * len(report['classes'])}. Hover over a column title for what it means.")
        folder = Path(report["run"]) / "evaluation"
        plots = report.get("plots", {})
        self._show_plots(folder, plots, QUALITY_PLOTS)
        self.pages["quality"].set_filled(True)
        self.pages["plots"].set_filled(any(k in plots for k in QUALITY_PLOTS))
        self.pages["real_vs_synthetic"].set_filled(bool(self._show_plots(folder, plots, ("real_vs_synthetic",))))
        self._show_copies(memo)
        self._show_plots(folder, plots, ("nearest",))
        self.pages["nearest"].set_filled(True)
        self._update_report_buttons()
        if switch:
            self.results.setCurrentWidget(self.pages["quality"])
        self.report_ready.emit(report)

    def _show_copies(self, memo: dict) -> None:
        flagged = memo.get("flagged_images", [])
        self.copies_note.setText(
            f"{memo['flagged']} generated image(s) ({memo['flagged_share'] * 100:.1f}%) are near-copies of a training "
            "image: nearer to it than almost any other patient's image is. A generated copy of a real X-ray can "
            "re-identify its patient; the Generate tab's recommended recipe leaves such images out. Below each generated image: its nearest training image, the copy ratio (about 0 = a copy, "
            "about 1 = a new image) and the patient." if memo["flagged"] else
            "No generated image is a near-copy of a training image. Below: for each class the generated images "
            "most like a training image, beside that image, with its patient id and the copy ratio (about 0 = a "
            "copy, about 1 = a new image).")
        self._fill(self.copies_table, ["nearest training image", "patient id", "class", "generated images like it",
                                       "lowest copy ratio"],
                   [[f["nearest_training_image"], f["nearest_patient_id"], f["class"], f["generated_images"],
                     f["min_copy_ratio"]] for f in flagged])
        self.copies_table.setVisible(bool(flagged))

    def show_augment_report(self, report: dict, switch: bool = True) -> None:
        from core.evaluation.augment_bench import report_table

        header, rows = report_table(report)
        arm_tips = {name: entry["description"] for name, entry in report["arms"].items()}
        self._fill(self.augment_table, header, rows, header_tips=arm_tips, row_tips=BENCH_ROW_TIPS)
        self.banner.show_verdict({**report["verdict"], "created": report.get("created")})
        synthetic = report["arms"].get("synthetic", {}).get("synthetic", {})
        added = ", ".join(f"{name} {n}" for name, n in synthetic.items()) or "none"
        self.augment_summary.setText(
            f"Measured over {report['config']['seeds']} seed(s) on {report['test_images']} held-out real images "
            f"(the verdict above). {report['recommended']['advice']}\n\nThe synthetic arm adds just enough images to "
            f"give every class as many as the largest ({added}; where fewer generated images passed the screening, "
            "real ones are repeated instead); the control repeats real images to the same counts. "
            "Hover over an arm or a row title for what it means.")
        folder = Path(report["run"]) / "evaluation"
        self._show_plots(folder, report.get("plots", {}), BENCH_PLOTS)
        self.pages["bench"].set_filled(True)
        self._update_report_buttons()
        if switch:
            self.results.setCurrentWidget(self.pages["bench"])
