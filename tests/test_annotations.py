"""The annotation store: edits overlay the originals, autosave atomically, survive a restart, export."""
from __future__ import annotations

import json
import pandas as pd
import pytest

from core.data.annotations import (AnnotationError, AnnotationStore, Box, BBOX_HEADER, PROJECT_FOLDER,
                              read_bbox_list)

ORIGINAL_BOXES = pd.DataFrame({
    "image": ["00000001_000.png", "00000001_000.png", "00000002_000.png"],
    "label": ["Atelectasis", "Infiltrate", "Mass"],
    "x": [10.5, 20.0, 30.0], "y": [11.0, 21.0, 31.0], "w": [40.0, 50.0, 60.0], "h": [41.0, 51.0, 61.0],
})
LABELS = {"00000001_000.png": "Atelectasis|Infiltration", "00000002_000.png": "Mass",
          "00000003_000.png": "No Finding"}


def _store(root, **kwargs):
    return AnnotationStore(root, ORIGINAL_BOXES, LABELS, **kwargs)


def test_original_boxes_are_shown_with_canonical_labels(tmp_path):
    store = _store(tmp_path)
    assert [b.label for b in store.boxes("00000001_000.png")] == ["Atelectasis", "Infiltration"]
    assert store.boxes("00000003_000.png") == ()
    assert not store.boxes_path.exists(), "nothing is written before the first edit"


def test_an_edit_is_autosaved_in_bbox_list_format(tmp_path):
    store = _store(tmp_path)
    assert store.add_box("00000003_000.png", Box("Nodule", 1, 2, 3.25, 4))
    assert store.boxes_path == tmp_path.resolve() / PROJECT_FOLDER / "annotations.csv"
    lines = store.boxes_path.read_text().splitlines()
    assert lines[0] == BBOX_HEADER
    assert "00000003_000.png,Nodule,1,2,3.25,4" in lines
    assert len(lines) == 1 + 4
    assert not store.dirty


def test_edits_survive_a_restart_including_deleting_every_box(tmp_path):
    store = _store(tmp_path)
    store.delete_box("00000002_000.png", 0)
    store.replace_box("00000001_000.png", 1, Box("Effusion", 5, 6, 7, 8))
    store.set_finding_labels("00000003_000.png", ["Nodule", "Mass"])
    again = _store(tmp_path)
    assert again.boxes("00000002_000.png") == ()
    assert again.boxes("00000001_000.png")[1] == Box("Effusion", 5, 6, 7, 8)
    assert again.finding_labels("00000003_000.png") == "Mass|Nodule"
    assert again.finding_labels("00000002_000.png") == "Mass"


def test_the_original_csv_is_never_written(tmp_path):
    original = tmp_path / "BBox_List_2017.csv"
    original.write_text("untouched")
    store = _store(tmp_path)
    store.add_box("00000003_000.png", Box("Mass", 1, 1, 2, 2))
    assert original.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROJECT_FOLDER, "BBox_List_2017.csv"]


def test_a_failed_save_keeps_the_store_dirty_and_says_why(tmp_path):
    store = _store(tmp_path)
    store.add_box("00000003_000.png", Box("Mass", 1, 1, 2, 2))
    store.boxes_path.unlink()
    store.boxes_path.mkdir()  # a folder in the way makes the rename fail
    assert store.add_box("00000003_000.png", Box("Nodule", 1, 1, 2, 2)) is False
    assert store.dirty
    assert str(store.folder) in store.last_error
    with pytest.raises(AnnotationError):
        store.save()
    assert store.dirty
    store.boxes_path.rmdir()
    store.save()
    assert not store.dirty and store.last_error == ""
    assert len(read_bbox_list(store.boxes_path)["00000003_000.png"]) == 2


def test_a_read_only_dataset_falls_back_to_the_user_data_folder(tmp_path, monkeypatch):
    import core.data.annotations as annotations
    dataset = tmp_path / "readonly"
    dataset.mkdir()
    real = annotations._writable_folder
    monkeypatch.setattr(annotations, "_writable_folder", lambda folder: dataset not in folder.parents and real(folder))
    store = _store(dataset, user_data_dir=tmp_path / "userdata")
    store.add_box("00000003_000.png", Box("Mass", 1, 1, 2, 2))
    assert store.boxes_path.is_relative_to(tmp_path / "userdata")
    assert "not writable" in store.location_note
    assert list(dataset.iterdir()) == []


def test_bad_edits_are_refused_with_the_image_named(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(AnnotationError, match="00000001_000.png"):
        store.add_box("00000001_000.png", Box("No Finding", 1, 1, 2, 2))
    with pytest.raises(AnnotationError, match="positive"):
        store.add_box("00000001_000.png", Box("Mass", 1, 1, 0, 2))
    with pytest.raises(AnnotationError, match="No Finding"):
        store.set_finding_labels("00000001_000.png", ["No Finding", "Mass"])
    with pytest.raises(AnnotationError, match="not an image"):
        store.add_box("99999999_000.png", Box("Mass", 1, 1, 2, 2))
    assert not store.boxes_path.exists()


def test_exports_bbox_list_and_coco(tmp_path):
    store = _store(tmp_path)
    assert store.export_bbox_list(tmp_path / "out.csv") == 3
    assert read_bbox_list(tmp_path / "out.csv") == store.all_boxes()
    sizes = {"00000001_000.png": (1024, 1024), "00000002_000.png": (512, 512)}
    assert store.export_coco(tmp_path / "out.json", sizes) == 3
    document = json.loads((tmp_path / "out.json").read_text())
    assert [i["file_name"] for i in document["images"]] == ["00000001_000.png", "00000002_000.png"]
    assert document["images"][1]["width"] == 512
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert [names[a["category_id"]] for a in document["annotations"]] == ["Atelectasis", "Infiltration", "Mass"]
    assert document["annotations"][0]["bbox"] == [10.5, 11.0, 40.0, 41.0]
