"""The browser and annotation tools, end to end in an offscreen window on the phantom demo dataset."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QPoint, QRectF, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QPushButton

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
    errors = []
    win.show_error = errors.append   # a modal error dialog would hang the test
    win.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: win.index is not None or bool(errors), timeout=10000)
    del win.show_error
    assert not errors
    return win


def answer_next_dialog(button_text: str, clicked: list | None = None, tries: int = 100) -> None:
    """Click the button starting with `button_text` in the next modal dialog, once it is open."""
    def click(left=tries):
        dialog = QApplication.activeModalWidget()
        buttons = [] if dialog is None else [b for b in dialog.findChildren(QPushButton) if b.text().startswith(button_text)]
        if buttons:
            if clicked is not None:
                clicked.append(dialog.windowTitle())
            buttons[0].click()
        elif left:
            QTimer.singleShot(20, lambda: click(left - 1))
    QTimer.singleShot(0, click)


def _select_image_with_boxes(window):
    panel = window.browse.panel
    panel.filters.has_box.setCurrentIndex(panel.filters.has_box.findData(True))
    panel.apply_filters()
    panel.select_view_row(0)
    return window.browse.image


def test_opening_a_dataset_lists_every_image_in_its_order_and_remembers_it(window, dataset):
    assert window.browse.panel.model.rowCount() == len(window.index.table)
    assert list(window.browse.panel.model.rows) == list(range(len(window.index.table))), "unsorted until asked"
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
    answer_next_dialog("Keep the labels")
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
    answer_next_dialog("Keep the labels")
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
    answer_next_dialog("Keep the labels")
    window.browse.viewer.box_drawn.emit(QRectF(1, 1, 20, 20))
    assert window.controller.store.dirty
    assert messages and "Not saved" in messages[0] and PROJECT_FOLDER in messages[0]
    target.rmdir()
    window.close()
    assert not window.controller.store.dirty, "closing the window retries the save"
    assert read_bbox_list(target)[image][-1].w == 20


def _drag(window, start, end, modifier=Qt.NoModifier) -> None:
    """A real mouse drag over the viewer, from and to image pixel coordinates."""
    from PySide6.QtCore import QPointF
    from PySide6.QtTest import QTest

    viewer = window.browse.viewer
    view = viewer.image_view.ui.graphicsView

    def at(x, y):
        return view.mapFromScene(viewer.view_box.mapViewToScene(QPointF(x, y)))

    # hover first, as a real mouse does: pyqtgraph picks the item a drag goes to from its last hover
    # event, and it rate-limits those, so a press right after the previous drag could miss the view
    QTest.mouseMove(view.viewport(), at(*start))
    QTest.qWait(50)
    QTest.mousePress(view.viewport(), Qt.LeftButton, modifier, at(*start))
    for step in range(1, 11):
        QTest.mouseMove(view.viewport(), at(start[0] + (end[0] - start[0]) * step / 10,
                                            start[1] + (end[1] - start[1]) * step / 10))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, modifier, at(*end))


@pytest.fixture
def shown(window, qtbot):
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_a_mouse_drag_in_draw_mode_draws_a_box_in_image_pixels_and_ends_draw_mode(shown):
    window = shown
    window.browse.panel.select_view_row(0)
    image = window.browse.image
    before = len(window.controller.store.boxes(image))
    window.browse.viewer.fit()
    window.browse.draw_button.setChecked(True)
    answer_next_dialog("Keep the labels")
    _drag(window, (60, 60), (140, 120))
    boxes = window.controller.store.boxes(image)
    assert len(boxes) == before + 1
    drawn = boxes[-1]
    assert drawn.label == window.browse.finding.currentText()
    assert (drawn.x, drawn.y, drawn.w, drawn.h) == pytest.approx((60, 60, 80, 60), abs=2)
    assert not window.browse.draw_button.isChecked(), "one box per press of D"
    _drag(window, (20, 20), (50, 50))
    assert len(window.controller.store.boxes(image)) == before + 1, "out of draw mode a drag pans"


def test_shift_or_keep_drawing_stays_in_draw_mode_and_esc_leaves_it(shown, qtbot):
    from PySide6.QtTest import QTest

    window = shown
    window.browse.panel.select_view_row(0)
    image = window.browse.image
    window.browse.finding.setCurrentText("Nodule")
    window.controller.set_finding_labels(image, ["Nodule"])   # no label question in this test
    before = len(window.controller.store.boxes(image))
    window.browse.viewer.fit()
    window.browse.draw_button.setChecked(True)
    _drag(window, (20, 20), (60, 60), Qt.ShiftModifier)
    assert window.browse.draw_button.isChecked(), "Shift held at the end of the drag keeps draw mode"
    _drag(window, (70, 70), (110, 110))
    assert not window.browse.draw_button.isChecked()
    QTest.keyClick(window, Qt.Key_D, Qt.ShiftModifier)   # Keep drawing
    assert window.browse.keep_drawing.isChecked() and window.browse.draw_button.isChecked()
    _drag(window, (120, 20), (160, 60))
    _drag(window, (120, 70), (160, 110))
    assert window.browse.draw_button.isChecked()
    assert len(window.controller.store.boxes(image)) == before + 4
    QTest.keyClick(window, Qt.Key_Escape)
    assert not window.browse.draw_button.isChecked() and not window.browse.keep_drawing.isChecked()


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


def _only(panel, label: str) -> None:
    """Filter to the images whose only label is `label`."""
    filters = panel.filters
    for row in range(filters.labels.count()):
        item = filters.labels.item(row)
        item.setCheckState(Qt.Checked if item.data(Qt.UserRole) == label else Qt.Unchecked)
    filters.mode.setCurrentIndex(filters.mode.findData("only"))
    panel.apply_filters()


def test_a_filter_that_removes_the_shown_image_shows_the_first_remaining_one_or_none(window, qtbot):
    panel, browse = window.browse.panel, window.browse
    window.show()
    qtbot.waitExposed(window)
    _only(panel, "Mass")
    panel.select_view_row(2)
    assert browse.image != panel.model.index(0, 0).data()
    _only(panel, "Effusion")
    first = panel.model.index(0, 0).data()
    assert browse.image == first and browse.metadata.values["image"].text() == first
    assert window.controller.store.finding_labels(first) == "Effusion"
    panel.filters.search.setText("no-such-image")
    panel.apply_filters()
    assert panel.model.rowCount() == 0
    assert browse.image is None
    assert browse.viewer.image_view.image is None
    assert browse.metadata.values["image"].text() == ""
    assert browse.viewer.items == []
    note, area = browse.viewer.note, browse.viewer.image_view.ui.graphicsView.rect()
    assert note.isVisible() and note.text() == "No image matches the filters"
    assert area.contains(note.geometry()), "the whole note is in view"
    assert abs(note.geometry().center().x() - area.center().x()) <= 2
    panel.filters.search.setText("")
    panel.apply_filters()
    assert browse.image == panel.model.index(0, 0).data() and not note.isVisible()


def test_a_nodule_box_on_a_mass_image_offers_the_label_and_undoes_as_one_step(window):
    browse, store = window.browse, window.controller.store
    _only(browse.panel, "Mass")
    image = browse.image
    boxes = store.boxes(image)
    browse.finding.setCurrentText("Nodule")
    asked = []
    answer_next_dialog("Add Nodule", asked)
    browse.viewer.box_drawn.emit(QRectF(10, 10, 30, 30))
    assert asked, "the user was asked"
    assert store.finding_labels(image) == "Mass|Nodule"
    assert store.boxes(image)[-1].label == "Nodule"
    table = window.index.table
    assert table.loc[table["image"] == image, "finding_labels"].item() == "Mass|Nodule"
    window.undo_action.trigger()
    assert store.finding_labels(image) == "Mass" and store.boxes(image) == boxes
    window.redo_action.trigger()
    assert store.finding_labels(image) == "Mass|Nodule" and len(store.boxes(image)) == len(boxes) + 1


def test_declining_keeps_the_labels_and_is_not_asked_again_for_that_image(window):
    browse, store = window.browse, window.controller.store
    _only(browse.panel, "Mass")
    image = browse.image
    browse.finding.setCurrentText("Nodule")
    asked = []
    answer_next_dialog("Keep the labels", asked)
    browse.viewer.box_drawn.emit(QRectF(10, 10, 30, 30))
    assert asked and store.finding_labels(image) == "Mass"
    browse.viewer.box_drawn.emit(QRectF(50, 50, 30, 30))   # would block here if it asked again
    assert [box.label for box in store.boxes(image)][-2:] == ["Nodule", "Nodule"]


def test_a_box_on_a_no_finding_image_replaces_no_finding(window):
    browse, store = window.browse, window.controller.store
    _only(browse.panel, "No Finding")
    image = browse.image
    browse.finding.setCurrentText("Effusion")
    answer_next_dialog("Label it Effusion")
    browse.viewer.box_drawn.emit(QRectF(10, 10, 30, 30))
    assert store.finding_labels(image) == "Effusion"


def test_the_edit_labels_dialog_shows_every_label_without_scrolling(window, qtbot):
    from app.annotation_tools import FindingLabelsDialog
    from core.labels import NIH_LABELS

    dialog = FindingLabelsDialog("00000001_000.png", "Mass|Nodule", window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    listing = dialog.list
    assert listing.count() == len(NIH_LABELS)
    assert listing.verticalScrollBar().maximum() == 0
    viewport = listing.viewport().rect()
    assert all(viewport.contains(listing.visualItemRect(listing.item(r))) for r in range(listing.count()))
    assert dialog.labels() == ["Mass", "Nodule"]


def test_sorting_keeps_the_selected_image_selected(window):
    panel = window.browse.panel
    panel.select_view_row(5)
    image = window.browse.image
    panel.table.sortByColumn(3, Qt.DescendingOrder)   # what a click on the Age header does
    current = panel.table.currentIndex()
    assert current.isValid()
    assert panel.model.index(current.row(), 0).data() == image
    assert window.browse.image == image
    assert panel.grid.currentIndex().row() == current.row()
    assert panel.table.selectionModel().isRowSelected(current.row())
    panel.step(1)
    assert window.browse.image == panel.model.index(current.row() + 1, 0).data()


def test_thumbnails_show_labels_and_their_boxes_in_the_findings_colours(window, qtbot):
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionViewItem

    from app.theme import colour_of
    from app.thumbnails import BOXES_ROLE, LABELS_ROLE

    image = _select_image_with_boxes(window)
    panel = window.browse.panel
    panel.as_grid.setChecked(True)
    index = panel.grid.currentIndex()
    assert index.data() == image
    assert index.data(LABELS_ROLE) == window.controller.store.finding_labels(image)
    boxes = index.data(BOXES_ROLE)
    assert boxes == window.controller.store.boxes(image)
    path = window.index.table.loc[window.index.table["image"] == image, "path"].item()
    panel.cache.entry(path)
    qtbot.waitUntil(lambda: panel.cache.get(path) is not None, timeout=10000)

    delegate = panel.grid.itemDelegate()
    option = QStyleOptionViewItem()
    option.initFrom(panel.grid)
    option.rect = QRect(QPoint(0, 0), delegate.cell_size(option.fontMetrics))
    canvas = QImage(option.rect.size(), QImage.Format_RGB32)
    canvas.fill(QColor("black"))
    painter = QPainter(canvas)
    delegate.paint(painter, option, index)
    painter.end()
    wanted = QColor(colour_of(boxes[0].label))

    def near(pixel: QColor) -> bool:
        return max(abs(pixel.red() - wanted.red()), abs(pixel.green() - wanted.green()),
                   abs(pixel.blue() - wanted.blue())) < 40

    thumb = [(x, y) for x in range(0, canvas.width(), 1) for y in range(0, 140)]
    assert sum(near(canvas.pixelColor(x, y)) for x, y in thumb) > 30, "box outlines in the finding's colour"
    text_rows = range(140, canvas.height())
    assert any(canvas.pixelColor(x, y).lightness() > 100 for x in range(canvas.width()) for y in text_rows)


def test_window_presets_have_keys_and_a_readout_and_stay_while_browsing(window, qtbot):
    from PySide6.QtTest import QTest

    from app.image_viewer import WINDOW_PRESETS

    window.show()
    qtbot.waitExposed(window)
    window.windowHandle().requestActivate()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)   # shortcuts act in the active window
    browse = window.browse
    table = browse.panel.table
    table.setFocus()
    levels = browse.viewer.image_view.ui.histogram.getLevels
    QTest.keyClick(table, Qt.Key_1)
    centre, width = WINDOW_PRESETS["Lung"]
    assert levels() == pytest.approx((centre - width / 2, centre + width / 2))
    assert browse.window_readout.text() == f"W {width}  L {centre}  (Lung)"
    QTest.keyClick(table, Qt.Key_Down)
    assert browse.image == browse.panel.model.index(1, 0).data()
    assert levels() == pytest.approx((centre - width / 2, centre + width / 2)), "the next image keeps the window"
    QTest.keyClick(table, Qt.Key_3)
    assert "(Bone)" in browse.window_readout.text()
    browse.viewer.image_view.setLevels(10, 110)   # as a drag on the histogram does
    assert browse.window_readout.text() == "W 100  L 60"
    QTest.keyClick(table, Qt.Key_R)
    assert browse.window_readout.text() == "W 255  L 128  (full range)"
    search = browse.panel.filters.search
    search.setFocus()
    QTest.keyClick(search, Qt.Key_2)
    age = browse.panel.filters.age_min
    age.setFocus()
    age.selectAll()
    QTest.keyClick(age, Qt.Key_2)
    assert search.text() == "2" and age.value() == 2, "a digit typed into a field is typed"
    assert "(full range)" in browse.window_readout.text()


@pytest.mark.parametrize("size", [(1500, 920), (1200, 760)])
def test_the_table_shows_every_column_at_the_default_and_a_smaller_window_size(qtbot, tmp_path, dataset, size):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    window.resize(*size)    # the offscreen screen is 800 x 800, so the default size is set here
    assert (window.width(), window.height()) == size
    window.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: window.index is not None, timeout=10000)
    qtbot.wait(50)
    table = window.browse.panel.table
    header = table.horizontalHeader()
    right_edges = [header.sectionViewportPosition(c) + header.sectionSize(c) for c in range(header.count())]
    assert max(right_edges) <= table.viewport().width(), "no column runs past the visible area"
    assert not table.horizontalScrollBar().isVisible()
    assert header.sectionSize(header.count() - 1) >= header.fontMetrics().horizontalAdvance("Boxes")
    assert header.sectionSize(1) >= 100, "Finding labels keeps a readable width"


@pytest.mark.parametrize("screen, expected", [((2560, 1440), (1500, 920)), ((1400, 900), (1400, 900))])
def test_the_first_window_fits_the_screen(qtbot, tmp_path, monkeypatch, screen, expected):
    """1500 x 920 by default, never wider or taller than the screen's free area (a 1400 x 900 screen used to
    lose the plots' right edge and the Open button)."""
    from PySide6.QtCore import QRect

    class Screen:
        def availableGeometry(self):
            return QRect(0, 0, *screen)

    monkeypatch.setattr(MainWindow, "screen", lambda self: Screen())
    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    assert (window.width(), window.height()) == expected
    window.show()
    sizes = window.browse.splitter.sizes()
    assert sizes[0] > sizes[1] > 0                      # the table's side wider, as at 850:650
