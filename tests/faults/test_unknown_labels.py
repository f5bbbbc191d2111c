"""Issue 11, item 6: a box label outside the NIH findings (`Lesion`) never locks the user out of their
annotations: it is read, shown, edited, saved, read back and exported like any other."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.data.annotations import (PROJECT_FOLDER, AnnotationError, Box, apply_saved_edits, open_store,
                                   read_bbox_list)
from core.data.dataset import open_dataset

from tests.faults.conftest import FIXTURES

ENTRY = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
         "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
         "00000001_000.png,Mass,0,1,58,M,PA,1024,1024,0.143,0.143\n"
         "00000002_000.png,Infiltration,0,2,40,F,AP,1024,1024,0.143,0.143\n"
         "00000003_000.png,No Finding,0,3,33,M,PA,1024,1024,0.143,0.143\n")
LESION = Box("Lesion", 100, 120, 30, 40)


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "nih"
    root.mkdir()
    (root / "Data_Entry_2017.csv").write_text(ENTRY)
    shutil.copy(FIXTURES / "BBox_unknown_labels.csv", root / "BBox_List_2017.csv")
    return root


def test_unknown_box_labels_are_read_as_data_and_reported(root):
    index = open_dataset(root)
    assert sorted(index.boxes["label"]) == ["Infiltration", "Lesion", "Mass", "lesion (old)"]
    assert any("unknown label 'Lesion'" in p and "kept as data" in p for p in index.problems)


def test_an_edit_beside_a_lesion_box_saves_and_the_store_opens_again(root, tmp_path):
    store = open_store(open_dataset(root), user_data_dir=tmp_path / "user")
    assert store.boxes("00000002_000.png")[0] == LESION
    assert store.add_box("00000002_000.png", Box("Effusion", 1, 1, 5, 5)), store.last_error
    assert "Lesion" in store.boxes_path.read_text()
    del store

    again = open_store(open_dataset(root), user_data_dir=tmp_path / "user")  # this open used to fail
    assert [b.label for b in again.boxes("00000002_000.png")] == ["Lesion", "Infiltration", "Effusion"]
    assert not again.read_only and again.add_box("00000001_000.png", Box("Nodule", 1, 1, 2, 2))


def test_a_lesion_box_can_be_moved_deleted_and_undone_but_new_names_are_refused(root, tmp_path):
    store = open_store(open_dataset(root), user_data_dir=tmp_path / "user")
    image = "00000002_000.png"
    before = store.boxes(image)
    moved = Box("Lesion", 110, 130, 30, 40)
    assert store.replace_box(image, 0, moved) and store.boxes(image)[0] == moved
    assert store.delete_box(image, 0) and all(b.label != "Lesion" for b in store.boxes(image))
    assert store.set_boxes(image, before) and store.boxes(image) == before  # undo restores the whole list
    assert store.add_box("00000003_000.png", Box("Lesion", 1, 1, 2, 2))  # a label the data already uses
    with pytest.raises(AnnotationError, match="'Bogus' is not a finding"):
        store.add_box(image, Box("Bogus", 1, 1, 2, 2))
    assert store.check_box(image, moved) == moved


def test_a_store_file_written_by_the_old_version_with_a_lesion_row_opens(root, tmp_path):
    folder = root / PROJECT_FOLDER
    folder.mkdir()
    (folder / "annotations.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                            "00000002_000.png,Lesion,100,120,30,40\n")
    store = open_store(open_dataset(root))
    assert store.boxes("00000002_000.png") == (LESION,)
    assert store.boxes("00000001_000.png") == ()  # the saved snapshot replaces the original list
    assert apply_saved_edits(open_dataset(root)) == 0


def test_exports_carry_unknown_labels(root, tmp_path):
    store = open_store(open_dataset(root), user_data_dir=tmp_path / "user")
    assert store.export_bbox_list(tmp_path / "boxes.csv") == 4
    assert read_bbox_list(tmp_path / "boxes.csv") == store.all_boxes()
    assert store.export_coco(tmp_path / "boxes.json", {"00000002_000.png": (1024, 1024)}) == 4
    document = json.loads((tmp_path / "boxes.json").read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert names[16] == "Lesion" and names[17] == "lesion (old)" and names[10] == "Infiltration"
    assert len(set(names)) == len(names) == 14 + 2
    assert sorted(names[a["category_id"]] for a in document["annotations"]) == \
        ["Infiltration", "Lesion", "Mass", "lesion (old)"]


def test_a_hand_damaged_store_file_is_refused_with_its_line_and_left_alone(root):
    folder = root / PROJECT_FOLDER
    folder.mkdir()
    text = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000002_000.png,Mass,1,2,three,4\n"
    (folder / "annotations.csv").write_text(text)
    with pytest.raises(AnnotationError, match=r"annotations.csv, line 2: not a valid box row"):
        open_store(open_dataset(root))
    assert (folder / "annotations.csv").read_text() == text
    assert not (folder / ".lock").exists(), "a store that failed to open must not keep the lock"
