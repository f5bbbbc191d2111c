"""An export folder of synthetic images opens in the browser like a dataset, read-only and marked synthetic."""
from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import QSettings, Qt

from app.main_window import MainWindow
from core.data.annotations import PROJECT_FOLDER
from core.export.export import CSV_NAME, EXPORT_FORMAT, IMAGES_DIR, MANIFEST_NAME, read_manifest, write_csv

CLASSES = ("Mass", "Nodule")


@pytest.fixture
def export_folder(tmp_path, demo_root):
    """An export folder as `export` writes it (its own CSV writer and manifest format), with phantom
    PNGs standing in for generated ones, so no model has to be trained for this test."""
    out = tmp_path / "synthetic-export"
    (out / IMAGES_DIR).mkdir(parents=True)
    sources = sorted(demo_root.rglob("*.png"))[:6]
    rows = []
    for k, source in enumerate(sources):
        name = f"synth_0123456789_{k + 1:06d}.png"
        shutil.copyfile(source, out / IMAGES_DIR / name)
        rows.append({"image": name, "class": CLASSES[k % 2], "label": k % 2, "latent_seed": k,
                     "patient_id": 90_000_000 + k, "age": 40 + k, "sex": "F", "view": "PA"})
    write_csv(out / CSV_NAME, rows, 256)
    manifest = {"format": EXPORT_FORMAT, "version": 2, "created": "2026-01-02T03:04:05+00:00",
                "model": {"run": str(tmp_path / "runs" / "chest-run"), "sha256": "0123456789", "trained_step": 89},
                "counts": {"Mass": 3, "Nodule": 3},
                "images": [{"image": r["image"], "class": r["class"]} for r in rows]}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return out


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    return win


def _open(window, qtbot, folder) -> None:
    window.index = None
    errors = []
    window.show_error = errors.append   # a modal error dialog would hang the test
    window.open_dataset(str(folder))
    qtbot.waitUntil(lambda: window.index is not None or bool(errors), timeout=10000)
    del window.show_error
    assert not errors


def test_an_export_is_recognised_by_its_manifest(export_folder, demo_root, tmp_path):
    assert read_manifest(export_folder)["counts"] == {"Mass": 3, "Nodule": 3}
    assert read_manifest(demo_root) is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    assert read_manifest(broken) is None
    (broken / MANIFEST_NAME).write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    assert read_manifest(broken) is None


def test_an_export_opens_like_a_dataset_marked_synthetic_and_read_only(window, qtbot, export_folder, monkeypatch):
    handed_to = []
    monkeypatch.setattr(window.train, "set_dataset", handed_to.append)
    monkeypatch.setattr(window.evaluate, "set_dataset", handed_to.append)
    window.show()
    _open(window, qtbot, export_folder)
    browse = window.browse
    assert browse.panel.model.rowCount() == 6
    assert "SYNTHETIC" in window.windowTitle()
    banner = browse.synthetic_banner.text()
    assert browse.synthetic_banner.isVisible() and not browse.demo_banner.isVisible()
    assert "SYNTHETIC" in banner and "6 generated" in banner and "chest-run" in banner and "step 89" in banner
    assert browse.viewer.synthetic_mark.isVisible()
    assert browse.image.startswith("synth_") and browse.viewer.image_view.image is not None
    assert browse.metadata.values["split"].text() == "none (synthetic)"
    assert window.controller is None
    assert not any(w.isEnabled() for w in (browse.draw_button, browse.labels_button, browse.finding))
    assert not window.export_csv.isEnabled()
    assert not (export_folder / PROJECT_FOLDER).exists(), "opening an export writes nothing into it"
    assert handed_to == [], "synthetic images are never offered to Train or Evaluate as real data"


def test_filters_work_on_an_export_and_a_real_dataset_afterwards_clears_the_marks(window, qtbot, export_folder,
                                                                                 demo_root, tmp_path):
    window.show()
    _open(window, qtbot, export_folder)
    panel = window.browse.panel
    item = panel.filters.labels.findItems("Nodule", Qt.MatchStartsWith)[0]
    item.setCheckState(Qt.Checked)
    panel.apply_filters()
    assert panel.model.rowCount() == 3
    assert window.browse.metadata.values["finding_labels"].text() == "Nodule"

    real = shutil.copytree(demo_root, tmp_path / "nih")
    _open(window, qtbot, real)
    assert not window.browse.synthetic_banner.isVisible()
    assert not window.browse.viewer.synthetic_mark.isVisible()
    assert "SYNTHETIC" not in window.windowTitle()
    assert window.controller is not None and window.browse.draw_button.isEnabled()
    assert window.browse.metadata.values["split"].text() in {"train", "val", "test"}


def test_an_image_of_another_size_is_fitted_in_the_view(window, qtbot, export_folder, tmp_path, demo_root):
    """Boxes of the previous image once counted in the auto-range and left a small image in a corner."""
    import cv2

    small = tmp_path / "small-export"
    shutil.copytree(export_folder, small)
    for png in (small / IMAGES_DIR).glob("*.png"):
        cv2.imwrite(str(png), cv2.resize(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE), (64, 64)))
    window.resize(1200, 800)
    window.show()
    _open(window, qtbot, shutil.copytree(demo_root, tmp_path / "nih"))
    panel = window.browse.panel
    panel.filters.has_box.setCurrentIndex(panel.filters.has_box.findData(True))
    panel.apply_filters()
    assert window.browse.viewer.items, "an image with boxes is shown before the switch"
    _open(window, qtbot, small)
    (x0, x1), (y0, y1) = window.browse.viewer.view_box.viewRange()
    assert max(x1 - x0, y1 - y0) < 64 * 2.5, "the 64 px image fills the view"
