"""The main window: menus, tabs, dataset opening (in a worker), settings kept with QSettings.

`run_app(argv)` opens the last dataset, or on first run writes the phantom demo dataset into the
user's data folder (in a worker, with a progress dialog) and opens that, with a banner saying it is
demo data. An export folder of synthetic images opens like a dataset, read-only, marked synthetic in
the title, a banner and on every image, and is never handed to Train or Evaluate as training data.
Errors reach the user as dialogs or status messages naming the file and the problem.
"""
from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QMainWindow, QMessageBox, QProgressBar,
                               QProgressDialog, QTabWidget)

from app.annotation_tools import AnnotationController
from app.browse_tab import PRESET_KEYS, BrowseTab, synthetic_note
from app.evaluate_panel import EvaluatePanel
from app.generate_panel import GeneratePanel
from app.import_dicom import import_dicom_folder
from app.theme import apply_theme
from app.train_panel import TrainPanel
from app.wheel_guard import install_wheel_guard
from app.workers import JobHandle, start_job
from core.data.annotations import AnnotationError, open_store
from core.data.dataset import open_dataset
from core.data.phantoms import is_demo_dataset, write_demo_dataset
from core.export.export import read_manifest

log = logging.getLogger(__name__)
RESOURCES = Path(__file__).resolve().parents[1] / "resources"
MAX_RECENT = 8
DEMO_NOTE = ("Demo data: these are procedural phantom images made by the app, not real X-rays. "
             "Use File > Open dataset folder… to browse NIH ChestX-ray14.")


def demo_folder() -> Path:
    """In the user's data folder, beside core's annotation fallback (~/.local/share/cxr-workbench on Linux)."""
    base = Path(QStandardPaths.writableLocation(QStandardPaths.GenericDataLocation))
    return base / "cxr-workbench" / "demo-dataset"


def _open_with_annotations(root: str, job):
    """Worker side: read the index and the user's annotation overlay (no Qt here)."""
    index = open_dataset(root, job=job)
    try:
        store = open_store(index)
    except AnnotationError as error:
        return index, None, str(error)
    store.apply_to(index)
    return index, store, ""


def _write_demo(out: str, job):
    return write_demo_dataset(out, job=job)


def _open_read_only(root: str, job):
    """Worker side for a synthetic export: the index only, no annotation store (it would write into the export)."""
    return open_dataset(root, job=job), None, ""


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        install_wheel_guard()
        self.settings = settings or QSettings()
        self.setWindowTitle("CXR Workbench")
        self.setWindowIcon(QIcon(str(RESOURCES / "icons" / "app.svg")))
        self.index = None
        self.controller: AnnotationController | None = None
        self._runners: list[JobHandle] = []
        self.browse = BrowseTab()
        self.browse.status.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.browse.error.connect(self.show_error)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.browse, "Browse && annotate")
        self._add_work_tabs()
        self.setCentralWidget(self.tabs)
        self.progress = QProgressBar(maximumWidth=220, textVisible=True)
        self.progress.hide()
        self.statusBar().addPermanentWidget(self.progress)
        self._build_menus()
        self._restore_window()

    def _add_work_tabs(self) -> None:
        self.train = TrainPanel(self.settings)
        self.generate = GeneratePanel(self.settings)
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.generate, "Generate")
        self.train.status.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.generate.status.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.train.run_finished.connect(self.generate.suggest_run)
        self.evaluate = EvaluatePanel()
        self.tabs.addTab(self.evaluate, "Evaluate")
        self.evaluate.error.connect(self.show_error)
        self.train.run_finished.connect(self.evaluate.set_run)

    # ---- menus
    def _action(self, menu, text, slot, shortcut=None, checkable=False, tip="") -> QAction:
        action = QAction(text, self, checkable=checkable, statusTip=tip)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open dataset folder…", self.choose_dataset, QKeySequence.Open)
        self.recent_menu = file.addMenu("Open &recent")
        self._action(file, "Open &synthetic export folder…", self.choose_export,
                     tip="Browse images exported by Generate, marked synthetic")
        self._action(file, "Open &demo dataset", self.open_demo)
        self._action(file, "&Import DICOM folder…", lambda: import_dicom_folder(self, self.settings, self.open_dataset))
        file.addSeparator()
        self.export_csv = self._action(file, "Export boxes as BBox_List &CSV…", self.export_bbox_csv)
        self.export_coco = self._action(file, "Export boxes as C&OCO JSON…", self.export_coco_json)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.Quit)

        edit = bar.addMenu("&Edit")
        self.undo_action = self._action(edit, "&Undo", lambda: self.controller and self.controller.undo_stack.undo(),
                                        QKeySequence.Undo)
        self.redo_action = self._action(edit, "&Redo", lambda: self.controller and self.controller.undo_stack.redo(),
                                        "Ctrl+Shift+Z")
        edit.addSeparator()
        self._action(edit, "&Draw box", self.browse.draw_button.toggle, "D")
        self._action(edit, "&Keep drawing boxes", self.browse.keep_drawing.toggle, "Shift+D")
        self._action(edit, "&Stop drawing", self.browse.stop_drawing, "Esc")
        self._action(edit, "De&lete selected box", self.browse.delete_selected, QKeySequence.Delete)
        self._action(edit, "Edit Finding &labels…", self.browse.edit_finding_labels, "Ctrl+L")
        self._action(edit, "&Find…", self._focus_search, QKeySequence.Find)

        view = bar.addMenu("&View")
        self._action(view, "&Previous image", lambda: self.browse.panel.step(-1), "Left")
        self._action(view, "&Next image", lambda: self.browse.panel.step(1), "Right")
        view.addSeparator()
        self._action(view, "Show &boxes", self.browse.boxes_button.toggle, "B")
        self._action(view, "&Invert", self.browse.invert_button.toggle, "I")
        self._action(view, "&Fit to window", self.browse.viewer.fit, "F")
        self._action(view, "Full grey &range", self.browse.viewer.reset_levels, "R")
        for name, key in PRESET_KEYS.items():
            self._action(view, f"{name} window", lambda _=False, n=name: self.browse.viewer.apply_preset(n), key)
        self._action(view, "&Thumbnails / table", lambda: (self.browse.panel.as_grid if
                     self.browse.panel.as_table.isChecked() else self.browse.panel.as_table).setChecked(True),
                     "Ctrl+T")
        view.addSeparator()
        for number in range(self.tabs.count()):
            title = self.tabs.tabText(number).replace("&&", "&")
            self._action(view, f"{title} tab", lambda _=False, n=number: self.tabs.setCurrentIndex(n),
                         f"Ctrl+{number + 1}")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, QKeySequence.HelpContents)
        self._action(help_menu, "&About", self.show_about)
        self._set_editing_enabled(False)
        self._rebuild_recent()

    def _focus_search(self) -> None:
        self.tabs.setCurrentWidget(self.browse)
        self.browse.panel.filters.search.setFocus()
        self.browse.panel.filters.search.selectAll()

    def _set_editing_enabled(self, enabled: bool) -> None:
        for action in (self.export_csv, self.export_coco):
            action.setEnabled(enabled)
        if not enabled:
            self.undo_action.setEnabled(False)
            self.redo_action.setEnabled(False)

    # ---- datasets
    def open_initial(self) -> None:
        last = self.settings.value("dataset/last", "", type=str)
        if last and Path(last).is_dir():
            self.open_dataset(last)
        else:
            self.open_demo()

    def choose_dataset(self) -> None:
        start = self.settings.value("dataset/last", str(Path.home()), type=str)
        folder = QFileDialog.getExistingDirectory(self, "Open NIH dataset folder", start)
        if folder:
            self.open_dataset(folder)

    def choose_export(self) -> None:
        start = self.settings.value("dataset/last", str(Path.home()), type=str)
        folder = QFileDialog.getExistingDirectory(self, "Open synthetic export folder", start)
        if not folder:
            return
        if read_manifest(folder) is None:
            self.show_error(f"{folder}: not a synthetic export (no manifest.json written by Generate). "
                            "Use File > Open dataset folder… for real data.")
            return
        self.open_dataset(folder)

    def open_demo(self) -> None:
        out = demo_folder()
        if is_demo_dataset(out) and (out / "Data_Entry_2017.csv").exists():
            self.open_dataset(str(out))
            return
        dialog = QProgressDialog("Creating the phantom demo dataset…", "Cancel", 0, 100, self)
        dialog.setWindowTitle("First start")
        dialog.setWindowModality(Qt.WindowModal)
        dialog.setMinimumDuration(0)
        runner = self._start(_write_demo, str(out))
        runner.progress.connect(lambda p: (dialog.setMaximum(max(1, p.total)), dialog.setValue(p.done)))
        dialog.canceled.connect(runner.request_stop)
        runner.finished.connect(lambda path: (dialog.reset(), self.open_dataset(str(path))))
        runner.failed.connect(lambda message: (dialog.reset(), self.show_error(message)))
        runner.cancelled.connect(lambda *_: dialog.reset())
        self.demo_dialog = dialog

    def open_dataset(self, folder: str) -> None:
        self.statusBar().showMessage(f"Opening {folder}…")
        self.progress.setValue(0)
        self.progress.show()
        runner = self._start(_open_read_only if read_manifest(folder) else _open_with_annotations, folder)
        runner.progress.connect(lambda p: (self.progress.setMaximum(max(1, p.total)), self.progress.setValue(p.done)))
        runner.finished.connect(lambda result: self._dataset_opened(folder, *result))
        runner.failed.connect(lambda message: (self.progress.hide(), self.show_error(message)))

    def _dataset_opened(self, folder: str, index, store, store_error: str) -> None:
        self.progress.hide()
        read_only_note = "Boxes are shown read-only until the file is fixed or removed."
        if store is not None and store.read_only:  # another window (process) holds these annotations
            store_error, read_only_note = store.read_only_reason, "Boxes and labels are shown read-only here."
            store = None  # never two writers: this window gets no editor
        if self.controller is not None:
            self.controller.deleteLater()
        self.index = index
        self.controller = None
        if store is not None:
            self.controller = AnnotationController(store, self)
            self.controller.saved.connect(self._saved)
            stack = self.controller.undo_stack
            self.undo_action.setEnabled(False)
            self.redo_action.setEnabled(False)
            stack.canUndoChanged.connect(self.undo_action.setEnabled)
            stack.canRedoChanged.connect(self.redo_action.setEnabled)
        self._set_editing_enabled(store is not None)
        demo = is_demo_dataset(folder)
        manifest = read_manifest(folder)
        self.browse.set_dataset(index, self.controller, DEMO_NOTE if demo else "",
                                synthetic_note(manifest) if manifest else "")
        if manifest is None:   # synthetic images are never offered as training or reference data
            self.train.set_dataset(index.root)
            self.evaluate.set_dataset(index.root)
        kind = " (demo data)" if demo else " (SYNTHETIC export)" if manifest else ""
        self.setWindowTitle(f"CXR Workbench — {index.root.name}{kind}")
        self.settings.setValue("dataset/last", str(index.root))
        self._remember(str(index.root))
        summary = f"{len(index.table):,} images, {len(index.boxes):,} boxes"
        if index.problems:
            summary += f"; {len(index.problems)} problem(s) in the files (see the log)"
            for problem in index.problems:
                log.warning("%s", problem)
        if store_error:
            self.show_error(f"{store_error}\n{read_only_note}")
        elif store is not None and store.location_note:
            summary += f"; {store.location_note}"
        self.statusBar().showMessage(f"Opened {index.root}: {summary}")

    def _remember(self, folder: str) -> None:
        recent = [f for f in self.settings.value("dataset/recent", [], type=list) if f != folder]
        self.settings.setValue("dataset/recent", [folder, *recent][:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("dataset/recent", [], type=list)
        for folder in recent:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_dataset(f))
        self.recent_menu.setEnabled(bool(recent))

    def _start(self, function, argument) -> JobHandle:
        """Light work that hands Qt-side objects back to the window: a thread of this process."""
        runner = start_job(function, argument, in_process=False)
        self._runners.append(runner)
        runner.done.connect(lambda: self._runners.remove(runner))
        return runner

    # ---- annotations
    def _saved(self, ok: bool, message: str) -> None:
        if ok:
            self.statusBar().showMessage(message, 4000)
        else:
            self.statusBar().showMessage(message)
            self.show_error(message)

    def export_bbox_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export boxes as BBox_List CSV",
                                              str(Path.home() / "BBox_List_edited.csv"), "CSV (*.csv)")
        if path:
            self._export(lambda: self.controller.store.export_bbox_list(Path(path)), path)

    def export_coco_json(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export boxes as COCO JSON",
                                              str(Path.home() / "boxes_coco.json"), "JSON (*.json)")
        if not path:
            return
        table = self.index.table
        sizes = {image: (int(w), int(h)) for image, w, h in
                 zip(table["image"], table["orig_width"].fillna(0), table["orig_height"].fillna(0))}
        self._export(lambda: self.controller.store.export_coco(Path(path), sizes), path)

    def _export(self, action, path: str) -> None:
        try:
            count = action()
        except AnnotationError as error:
            self.show_error(str(error))
        else:
            self.statusBar().showMessage(f"Exported {count} boxes to {path}", 6000)

    # ---- messages
    def show_error(self, message: str) -> None:
        self.statusBar().showMessage(message.splitlines()[0])
        QMessageBox.warning(self, "CXR Workbench", message)

    def show_shortcuts(self) -> None:
        path = Path(__file__).resolve().parents[1] / "docs" / "SHORTCUTS.md"
        text = path.read_text(encoding="utf-8") if path.exists() else "docs/SHORTCUTS.md is missing."
        box = QMessageBox(QMessageBox.Information, "Keyboard shortcuts", text, parent=self)
        box.setTextFormat(Qt.MarkdownText)
        box.exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About CXR Workbench",
                          "Browse and annotate NIH ChestX-ray14, train a class-conditional GAN, "
                          "evaluate it and export a labelled synthetic set in NIH format.")

    # ---- window state
    def _restore_window(self) -> None:
        geometry = self.settings.value("window/geometry")
        # 1500 x 920 shows every table column and plot, but never more than the screen has room for: on a
        # 1400 x 900 screen the window used to run off its right edge, hiding the plots and the Open button
        available = self.screen().availableGeometry()
        width, height = min(1500, available.width()), min(920, available.height())
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(width, height)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.value("window/browse_splitter")
        if splitter is not None:
            self.browse.splitter.restoreState(splitter)
        else:
            self.browse.splitter.setSizes([width * 17 // 30, width * 13 // 30])   # 850:650 at 1500 px

    def closeEvent(self, event) -> None:
        if not self.train.confirm_close(self):
            event.ignore()
            return
        self.generate.stop_and_wait()
        self._stop_evaluation()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/browse_splitter", self.browse.splitter.saveState())
        if self.controller is not None and self.controller.store.dirty:
            try:
                self.controller.store.save()
            except AnnotationError as error:
                answer = QMessageBox.question(self, "Unsaved annotations",
                                              f"{error}\n\nQuit anyway and lose the unsaved edits?")
                if answer != QMessageBox.Yes:
                    event.ignore()
                    return
        self.browse.panel.cache.wait()
        for runner in list(self._runners):
            runner.request_stop()
            runner.wait(10000)
        event.accept()


    def _stop_evaluation(self) -> None:
        """The Evaluate tab's job must end before its thread object goes away with the window."""
        self.evaluate.stop()
        deadline = time.monotonic() + 60
        while self.evaluate.is_running() and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.02)


def _excepthook(kind, value, tb) -> None:
    """An unexpected error in a slot: log the traceback, tell the user in one line."""
    log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, value, tb)))
    if QApplication.instance() is not None:
        QMessageBox.critical(None, "CXR Workbench", f"Unexpected error: {kind.__name__}: {value}\n"
                             "Details are in the log on the terminal.")


def run_app(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName("cxr-workbench")
    app.setApplicationName("cxr-workbench")
    apply_theme(app)
    sys.excepthook = _excepthook
    window = MainWindow()
    window.show()
    QTimer.singleShot(0, window.open_initial)
    return app.exec()
