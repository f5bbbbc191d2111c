"""The browser and annotation tools, end to end in an offscreen window on the phantom demo dataset."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QRectF, QSettings, Qt

from app.main_window import MainWindow
from core.data.annotations import BBOX_HEADER, PROJECT_FOLDER, read_bbox_list


@pytest.fixture
def dataset(tmp_path, demo_root):
    """A private copy of the demo dataset: annotation tests write next to it."""
    return shutil.copytree(demo_root, tmp_path / "nih")


@pytest.fixture
def window(qtbot, tmp_path, dataset):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: win.index is not None, timeout=10000)
    return win


def _select_image_with_boxes(window):
    panel = window.browse.panel
    panel.filters.has_box.setCurrentIndex(panel.filters.has_box.findData(True))
    panel.apply_filters()
    panel.select_view_row(0)
    return window.browse.image


def test_opening_a_dataset_lists_every_image_and_remembers_it(window, dataset):
    assert window.browse.panel.model.rowCount() == len(window.index.table)
    assert window.settings.value("dataset/last") == str(dataset)
    assert window.settings.value("dataset/recent", type=list)[0] == str(dataset)
    assert "demo data" in window.windowTitle()
    assert not window.browse.demo_banner.isHidden()


def test_label_filter_and_counts_follow_each_other(window):
    panel = window.browse.panel
    filters = panel.filters
    mass = filters.labels.findItems("Mass", Qt.MatchStartsWith)[0]
    mass.setCheckState(Qt.Checked)
    filters.mode.setCurrentIndex(filters.mode.findData("only"))
    panel.apply_filters()
    rows = panel.model.rowCount()
    assert 0 < rows < len(window.index.table)
    assert all(panel.model.index(r, 1).data() == "Mass" for r in range(rows))
    assert mass.text() == f"Mass  ({rows:,})"
    assert filters.labels.findItems("Effusion", Qt.MatchStartsWith)[0].text() == "Effusion  (0)"
    assert panel.count_label.text().startswith(f"{rows:,} of")


def test_sorting_by_age_orders_the_visible_rows(window):
    model = window.browse.panel.model
    model.sort(3, Qt.DescendingOrder)
    ages = [int(model.index(r, 3).data()) for r in range(model.rowCount()) if model.index(r, 3).data()]
    assert ages == sorted(ages, reverse=True)


def test_thumbnail_grid_decodes_in_the_background_and_caches(window, qtbot):
    panel = window.browse.panel
    panel.as_grid.setChecked(True)
    assert panel.stack.currentWidget() is panel.grid
    path = window.index.table["path"].iat[panel.model.source_row(0)]
    panel.grid_model.index(0).data(Qt.DecorationRole)  # asks for the thumbnail
    qtbot.waitUntil(lambda: panel.cache.get(path) is not None, timeout=10000)
    assert panel.cache.get(path).width() <= 128


def test_selecting_an_image_shows_it_with_its_boxes(window):
    image = _select_image_with_boxes(window)
    viewer = window.browse.viewer
    expected = window.controller.store.boxes(image)
    assert expected
    assert [item.label for item in viewer.items] == [box.label for box in expected]
    assert viewer.image_view.image is not None
    assert window.browse.metadata.values["image"].text() == image
    window.browse.boxes_button.setChecked(False)
    assert not any(item.isVisible() for item in viewer.items)


def test_arrow_keys_step_through_the_filtered_images(window, qtbot):
    panel = window.browse.panel
    panel.select_view_row(0)
    first = window.browse.image
    panel.step(1)
    assert window.browse.image == panel.model.index(1, 0).data() != first
    panel.step(-1)
    assert window.browse.image == first


def test_draw_undo_redo_and_the_autosave_file(window, dataset):
    image = _select_image_with_boxes(window)
    before = window.controller.store.boxes(image)
    window.browse.finding.setCurrentText("Nodule")
    window.browse.viewer.box_drawn.emit(QRectF(10, 20, 30, 40))
    saved = dataset / PROJECT_FOLDER / "annotations.csv"
    assert len(window.browse.viewer.items) == len(before) + 1
    lines = saved.read_text().splitlines()
    assert lines[0] == BBOX_HEADER
    assert f"{image},Nodule,10,20,30,40" in lines
    assert not window.controller.store.dirty

    window.undo_action.trigger()
    assert window.controller.store.boxes(image) == before
    assert read_bbox_list(saved).get(image, ()) == before
    assert len(window.browse.viewer.items) == len(before)

    window.redo_action.trigger()
    assert read_bbox_list(saved)[image][-1].label == "Nodule"
    assert window.index.table.loc[window.index.table["image"] == image, "n_boxes"].item() == len(before) + 1


def test_moving_relabelling_and_deleting_a_box_are_undoable(window):
    image = _select_image_with_boxes(window)
    store = window.controller.store
    original = store.boxes(image)
    viewer = window.browse.viewer
    item = viewer.items[0]
    item.setPos((original[0].x + 5, original[0].y + 7))  # the drag ends with sigRegionChangeFinished
    assert store.boxes(image)[0].x == pytest.approx(original[0].x + 5, abs=0.01)
    viewer.select(0)
    window.browse.finding.setCurrentText("Pneumothorax")
    window.browse.finding.activated.emit(window.browse.finding.currentIndex())
    assert store.boxes(image)[0].label == "Pneumothorax"
    viewer.select(0)
    window.browse.delete_selected()
    assert len(store.boxes(image)) == len(original) - 1
    for _ in range(3):
        window.undo_action.trigger()
    assert store.boxes(image) == original


def test_edited_finding_labels_update_the_table_and_survive_reopening(window, qtbot, dataset):
    window.browse.panel.select_view_row(0)
    image = window.browse.image
    window.controller.set_finding_labels(image, ["Mass", "Nodule"])
    row = window.index.table.index[window.index.table["image"] == image][0]
    assert window.index.table.at[row, "finding_labels"] == "Mass|Nodule"
    assert window.browse.metadata.values["finding_labels"].text() == "Mass|Nodule"
    model = window.browse.panel.model
    assert model.index(model.view_row(row), 1).data() == "Mass|Nodule"
    window.index = None
    window.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: window.index is not None, timeout=10000)
    assert window.controller.store.finding_labels(image) == "Mass|Nodule"
    assert window.index.table.loc[window.index.table["image"] == image, "finding_labels"].item() == "Mass|Nodule"


def test_a_failed_autosave_is_reported_and_kept_unsaved(window, dataset, monkeypatch):
    image = _select_image_with_boxes(window)
    messages = []
    monkeypatch.setattr(window, "show_error", messages.append)
    target = dataset / PROJECT_FOLDER / "annotations.csv"
    target.unlink(missing_ok=True)
    target.mkdir()
    window.browse.viewer.box_drawn.emit(QRectF(1, 1, 20, 20))
    assert window.controller.store.dirty
    assert messages and "Not saved" in messages[0] and PROJECT_FOLDER in messages[0]
    target.rmdir()
    window.close()
    assert not window.controller.store.dirty, "closing the window retries the save"
    assert read_bbox_list(target)[image][-1].w == 20


def test_a_mouse_drag_in_draw_mode_draws_a_box_in_image_pixels(window, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtTest import QTest

    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    window.browse.panel.select_view_row(0)
    image = window.browse.image
    before = len(window.controller.store.boxes(image))
    viewer = window.browse.viewer
    viewer.fit()
    window.browse.draw_button.setChecked(True)
    view = viewer.image_view.ui.graphicsView

    def at(x, y):
        return view.mapFromScene(viewer.view_box.mapViewToScene(QPointF(x, y)))

    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, at(60, 60))
    for step in range(1, 11):
        QTest.mouseMove(view.viewport(), at(60 + 8 * step, 60 + 6 * step))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, at(140, 120))
    boxes = window.controller.store.boxes(image)
    assert len(boxes) == before + 1
    drawn = boxes[-1]
    assert drawn.label == window.browse.finding.currentText()
    assert (drawn.x, drawn.y, drawn.w, drawn.h) == pytest.approx((60, 60, 80, 60), abs=2)


def test_a_folder_that_is_not_a_dataset_is_named_in_the_error(qtbot, tmp_path, monkeypatch):
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    errors = []
    monkeypatch.setattr(win, "show_error", errors.append)
    empty = tmp_path / "not-nih"
    empty.mkdir()
    win.open_dataset(str(empty))
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert str(empty) in errors[0]
    assert win.index is None


def test_a_corrupt_annotation_file_is_reported_and_never_overwritten(qtbot, tmp_path, dataset, monkeypatch):
    folder = dataset / PROJECT_FOLDER
    folder.mkdir()
    (folder / "annotations.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\nbroken row\n")
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    errors = []
    monkeypatch.setattr(win, "show_error", errors.append)
    win.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: win.index is not None, timeout=10000)
    assert errors and "annotations.csv, line 2" in errors[0]
    assert win.controller is None and not win.browse.draw_button.isEnabled()
    assert "broken row" in (folder / "annotations.csv").read_text()


def test_export_menu_writes_coco_json_with_image_sizes(window, tmp_path, monkeypatch):
    import json

    target = tmp_path / "boxes.json"
    monkeypatch.setattr("app.main_window.QFileDialog.getSaveFileName", lambda *args: (str(target), ""))
    window.export_coco.trigger()
    document = json.loads(target.read_text())
    assert len(document["annotations"]) == len(window.index.boxes)
    assert all(image["width"] > 0 for image in document["images"])
