"""File > Import DICOM folder…: a dialog that fills an `ImportDicomConfig`, then core's "import-dicom" task.

`import_dicom_folder(parent, settings, open_dataset)` is what the menu calls: the dialog asks for the DICOM
folder, the dataset folder to write, an optional labels CSV and the image size (titles and tooltips from
the config's own fields); `run_import` asks before writing into a folder that holds other files, runs the
task in a child process (`app.workers.start_job`) behind a progress dialog with Stop, tells what was added
and skipped (every skipped file under "Show Details…"), and hands the dataset folder to `open_dataset`.
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QMessageBox, QProgressDialog, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from app.messages import plain
from app.workers import JobHandle, start_job
from core.data.dicom import ImportDicomConfig, ImportResult, OutNotEmpty, check_out_folder
from core.errors import UserError
from core.jobs import format_duration

_FIELDS = {f.name: f for f in fields(ImportDicomConfig)}


def _title(name: str) -> str:
    return _FIELDS[name].metadata.get("label") or name.capitalize()


class ImportDicomDialog(QDialog):
    """Source, destination, labels and size; remembers them in `settings` under "dicom/"."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Import DICOM folder")
        self.source = self._path_edit("source")
        self.out = self._path_edit("out")
        self.labels = self._path_edit("labels")
        self.labels.setPlaceholderText("optional: without it the images get no Finding Labels")
        self.size = QSpinBox(minimum=64, maximum=4096, singleStep=64, suffix=" px")
        self.size.setValue(settings.value("dicom/size", ImportDicomConfig().size, type=int))
        self.size.setToolTip(_FIELDS["size"].metadata["help"])
        form = QFormLayout()
        form.addRow(_title("source"), self._with_button(self.source, self._choose_source))
        form.addRow(_title("out"), self._with_button(self.out, self._choose_out))
        form.addRow(_title("labels"), self._with_button(self.labels, self._choose_labels))
        form.addRow("Image size", self.size)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        for edit in (self.source, self.out):
            edit.textChanged.connect(self._update_ok)
        self._update_ok()
        self.resize(640, self.sizeHint().height())

    def _path_edit(self, name: str) -> QLineEdit:
        edit = QLineEdit(self.settings.value(f"dicom/{name}", "", type=str))
        edit.setToolTip(_FIELDS[name].metadata["help"])
        return edit

    @staticmethod
    def _with_button(edit: QLineEdit, choose) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit)
        button = QPushButton("Browse…")
        button.clicked.connect(choose)
        layout.addWidget(button)
        return row

    def _choose_source(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "DICOM folder", self.source.text() or str(Path.home()))
        if folder:
            self.source.setText(folder)
            if not self.out.text():
                self.out.setText(str(Path(folder).with_name(Path(folder).name + "_nih")))

    def _choose_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder to write", self.out.text() or str(Path.home()))
        if folder:
            self.out.setText(folder)

    def _choose_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labels CSV", self.labels.text() or str(Path.home()),
                                              "CSV (*.csv);;All files (*)")
        if path:
            self.labels.setText(path)

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(bool(self.source.text().strip() and self.out.text().strip()))

    def config(self) -> ImportDicomConfig:
        return ImportDicomConfig(source=self.source.text().strip(), out=self.out.text().strip(),
                                 labels=self.labels.text().strip(), size=self.size.value())

    def accept(self) -> None:
        for name in ("source", "out", "labels"):
            self.settings.setValue(f"dicom/{name}", getattr(self, name).text().strip())
        self.settings.setValue("dicom/size", self.size.value())
        super().accept()


def import_dicom_folder(parent: QWidget, settings: QSettings, open_dataset: Callable[[str], None]) -> JobHandle | None:
    """The menu action: ask, then import; None when the user cancelled."""
    dialog = ImportDicomDialog(settings, parent)
    if dialog.exec() != QDialog.Accepted:
        return None
    return run_import(parent, dialog.config(), open_dataset)


def run_import(parent: QWidget, config: ImportDicomConfig, open_dataset: Callable[[str], None]) -> JobHandle | None:
    """Run the import behind a progress dialog; the dataset is opened when images were added."""
    try:
        check_out_folder(config.out, config.force)
    except OutNotEmpty:
        answer = QMessageBox.question(
            parent, "Import DICOM folder",
            f"{config.out} holds other files and no earlier DICOM import.\n\nImport into it anyway? "
            f"Files named like the dataset's (Data_Entry_2017.csv, images_001/…) would be replaced.")
        if answer != QMessageBox.Yes:
            return None
        config = replace(config, force=True)
    except UserError as error:
        QMessageBox.warning(parent, "Import DICOM folder", plain(str(error)))
        return None
    progress = QProgressDialog("Looking for DICOM files…", "Stop", 0, 0, parent)
    progress.setWindowTitle("Import DICOM folder")
    progress.setWindowModality(Qt.WindowModal)
    progress.setMinimumDuration(0)
    progress.setAutoReset(False)
    progress.setAutoClose(False)
    handle = start_job("import-dicom", config)

    def show_progress(report) -> None:
        progress.setMaximum(max(1, report.total))
        progress.setValue(min(report.done, report.total))
        eta = f" — {format_duration(report.eta_seconds)} left" if report.stage == "converting" else ""
        progress.setLabelText(f"{report.stage.capitalize()}: {report.message}{eta}")

    def finished(result: ImportResult, stopped: str = "") -> None:
        progress.close()
        _tell(parent, result, stopped)
        if result.total:
            open_dataset(str(result.out))

    def cancelled(message: str, result) -> None:
        if result is None:
            progress.close()
            QMessageBox.information(parent, "Import DICOM folder", message)
        else:
            finished(result, stopped=message)

    def failed(message: str) -> None:
        progress.close()
        QMessageBox.warning(parent, "Import DICOM folder", plain(message))

    handle.progress.connect(show_progress)
    handle.finished.connect(finished)
    handle.cancelled.connect(cancelled)
    handle.failed.connect(failed)
    progress.canceled.connect(handle.request_stop)
    progress.canceled.connect(lambda: progress.setLabelText("Stopping: saving the images converted so far…"))
    return handle


def _tell(parent: QWidget, result: ImportResult, stopped: str) -> None:
    box = QMessageBox(QMessageBox.Information, "Import DICOM folder",
                      ((stopped[0].upper() + stopped[1:] + ".\n\n") if stopped else "")
                      + "\n".join(result.summary_lines()), parent=parent)
    details = [f"{name}: {kind} — {detail}" for name, kind, detail in result.skipped]
    if result.unlabelled:
        details += ["", "New images without Finding Labels:", *result.unlabelled]
    if details:
        box.setDetailedText("\n".join(details))
    box.open()   # not exec(): the dataset opens behind it
