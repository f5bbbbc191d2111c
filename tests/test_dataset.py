"""Opening NIH dataset folders: both Data_Entry releases, the BBox quirks, layouts, splits, filters."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.dataset import DatasetError, open_dataset
from core.errors import UserError
from core.jobs import Job
from core.labels import LABEL_INDEX, NIH_LABELS

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def fixture_names(entry: str = "Data_Entry_2017.csv") -> list[str]:
    lines = (FIXTURES / entry).read_bytes().decode().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def make_root(tmp_path: Path, entry: str = "Data_Entry_2017.csv", layout: str = "numbered",
              images: list[str] | None = None, bbox: bool = True, lists: bool = False) -> Path:
    """A dataset folder from the fixture CSVs, with (empty) PNG files in one of the three layouts."""
    root = tmp_path / "nih"
    root.mkdir(parents=True)
    shutil.copy(FIXTURES / entry, root / entry)
    if bbox:
        shutil.copy(FIXTURES / "BBox_List_2017.csv", root / "BBox_List_2017.csv")
    if lists:
        for name in ("train_val_list.txt", "test_list.txt"):
            shutil.copy(FIXTURES / name, root / name)
    names = fixture_names() if images is None else images
    for i, name in enumerate(names):
        folder = {"numbered": root / f"images_{1 + i % 2:03d}" / "images", "flat": root / "images",
                  "root": root}[layout]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return root


def write_entry(root: Path, rows: list[str], header: str = HEADER, name: str = "Data_Entry_2017.csv") -> Path:
    root.mkdir(exist_ok=True)
    (root / name).write_text("\n".join([header] + rows) + "\n")
    return root


ROW = "00000001_000.png,Mass,0,1,58,M,PA,1024,1024,0.143,0.143"


def test_2017_release_with_crlf_trailing_comma_padded_ids_and_year_ages(tmp_path):
    index = open_dataset(make_root(tmp_path))
    table = index.table
    assert len(table) == 10
    assert table["patient_id"].tolist() == [1, 1, 1, 2, 3, 3, 4, 5, 5, 13]
    assert table["age"].tolist()[:5] == [58, 58, 58, 81, 414]
    assert table["follow_up"].tolist()[-2:] == [6, 5]
    first = table.iloc[0]
    assert (first["sex"], first["view"], first["orig_width"], first["orig_height"]) == ("M", "PA", 2682, 2749)
    assert first["spacing_x"] == pytest.approx(0.143)
    assert list(table.columns) == ["image", "path", "finding_labels", "follow_up", "patient_id", "age", "sex",
                                   "view", "orig_width", "orig_height", "spacing_x", "spacing_y", "n_boxes",
                                   "split"]


def test_ages_over_100_are_kept_and_reported_with_their_line(tmp_path):
    index = open_dataset(make_root(tmp_path))
    assert index.table.loc[index.table["image"] == "00000003_000.png", "age"].item() == 414
    assert any("Data_Entry_2017.csv" in p and "over 100" in p and "414" in p and "line 6" in p
               for p in index.problems)


def test_v2020_release_reads_the_same_as_2017(tmp_path):
    old = open_dataset(make_root(tmp_path / "a"))
    new = open_dataset(make_root(tmp_path / "b", entry="Data_Entry_2017_v2020.csv"))
    assert new.data_entry.name == "Data_Entry_2017_v2020.csv"
    for column in ("image", "finding_labels", "follow_up", "patient_id", "sex", "view", "orig_width"):
        assert new.table[column].tolist() == old.table[column].tolist()
    np.testing.assert_array_equal(new.labels, old.labels)
    assert new.problems == []


def test_gzipped_data_entry_is_read(tmp_path):
    root = make_root(tmp_path)
    data = (root / "Data_Entry_2017.csv").read_bytes()
    (root / "Data_Entry_2017.csv").unlink()
    (root / "Data_Entry_2017.csv.gz").write_bytes(gzip.compress(data))
    index = open_dataset(root)
    assert index.data_entry.name == "Data_Entry_2017.csv.gz"
    assert len(index.table) == 10


def test_labels_are_multi_hot_in_nih_order_split_on_bars(tmp_path):
    index = open_dataset(make_root(tmp_path))
    assert index.labels.dtype == bool and index.labels.shape == (10, 15)
    last = index.labels[-1]
    assert [NIH_LABELS[i] for i in np.flatnonzero(last)] == [
        "Emphysema", "Infiltration", "Pleural_Thickening", "Pneumothorax"]
    assert index.label_counts()["Cardiomegaly"] == 3
    assert index.label_counts()["No Finding"] == 2
    assert list(index.label_counts()) == list(NIH_LABELS)


def test_label_names_are_never_matched_as_substrings(tmp_path):
    root = write_entry(tmp_path / "nih", ["00000001_000.png,Pleural_Thickening,0,1,58,M,PA,1,1,1,1",
                                          "00000002_000.png,Mass|Nodule,0,2,58,M,PA,1,1,1,1"])
    index = open_dataset(root)
    assert index.labels[0].sum() == 1 and index.labels[0, LABEL_INDEX["Pleural_Thickening"]]
    assert index.labels[1].sum() == 2


def test_bbox_list_is_read_by_position_with_6_and_9_field_rows_and_infiltrate(tmp_path):
    index = open_dataset(make_root(tmp_path))
    boxes = index.boxes
    assert list(boxes.columns) == ["image", "label", "x", "y", "w", "h"]
    assert len(boxes) == 4
    assert boxes["label"].tolist() == ["Effusion", "Infiltration", "Mass", "Nodule"]
    assert boxes.iloc[0][["x", "y", "w", "h"]].tolist() == pytest.approx([225.0847, 547.0192, 86.7797, 79.1864],
                                                                          abs=1e-3)
    counts = dict(zip(index.table["image"], index.table["n_boxes"]))
    assert counts["00000004_000.png"] == 2 and counts["00000001_000.png"] == 0
    assert index.summary()["boxes"] == 4


def test_unreadable_bbox_list_is_reported_and_the_dataset_still_opens(tmp_path):
    root = make_root(tmp_path)
    (root / "BBox_List_2017.csv").write_text("x,y\n1,2\n")
    index = open_dataset(root)
    assert len(index.table) == 10 and len(index.boxes) == 0
    assert any(p.startswith("BBox_List_2017.csv: line 1 is not the BBox header") and p.endswith("no boxes loaded")
               for p in index.problems)


def test_bad_bbox_rows_are_counted_with_line_numbers(tmp_path):
    root = make_root(tmp_path)
    with open(root / "BBox_List_2017.csv", "a") as f:
        f.write("00000002_000.png,Mass,1,2,-3,4\r\n00000099_000.png,Mass,1,2,3,4\r\n"
                "../evil.png,Mass,1,2,3,4\r\n00000002_000.png,Mass,1,2,3\r\n00000002_000.png,Covid,1,2,3,4\r\n")
    index = open_dataset(root)
    assert len(index.boxes) == 5
    problems = "\n".join(index.problems)
    assert "BBox_List_2017.csv: 2 rows that are not 'image,label,x,y,w,h'" in problems and "lines 6, 9" in problems
    assert "BBox_List_2017.csv: 1 row for an image not in Data_Entry (line 7)" in problems
    assert "BBox_List_2017.csv: 1 row with an image name that has a path separator or '..' (line 8)" in problems
    assert "BBox_List_2017.csv: 1 row with unknown label 'Covid' (line 10); kept" in problems


def test_non_utf8_data_entry_names_file_and_line(tmp_path):
    root = write_entry(tmp_path / "nih", [ROW])
    with open(root / "Data_Entry_2017.csv", "ab") as f:
        f.write(b"00000002_000.png,Ma\xffss,0,2,58,M,PA,1,1,1,1\n")
    with pytest.raises(DatasetError, match=r"Data_Entry_2017.csv: line 3 is not UTF-8 text"):
        open_dataset(root)


def test_missing_bbox_list_means_no_boxes(tmp_path):
    index = open_dataset(make_root(tmp_path, bbox=False))
    assert len(index.boxes) == 0 and (index.table["n_boxes"] == 0).all()


@pytest.mark.parametrize("layout", ["numbered", "flat", "root"])
def test_all_three_folder_layouts_resolve_paths(tmp_path, layout):
    present = fixture_names()[:7]
    index = open_dataset(make_root(tmp_path, layout=layout, images=present))
    paths = dict(zip(index.table["image"], index.table["path"]))
    for name in present:
        assert Path(paths[name]).is_file() and Path(paths[name]).name == name
    assert [name for name, path in paths.items() if path == ""] == fixture_names()[7:]
    summary = index.summary()
    assert (summary["images_found"], summary["images_missing"]) == (7, 3)


def test_paths_are_resolved_by_listing_folders_not_by_stat_per_row(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    calls = []
    real_isfile, real_exists = Path.is_file, Path.exists
    monkeypatch.setattr(Path, "is_file", lambda self: calls.append(self) or real_isfile(self))
    monkeypatch.setattr(Path, "exists", lambda self: calls.append(self) or real_exists(self))
    open_dataset(root)
    assert not [p for p in calls if p.suffix == ".png"]


def test_wrong_field_counts_are_counted_with_line_numbers_and_skipped(tmp_path):
    rows = [ROW, "00000002_000.png,Mass,0,2,58,M,PA", ROW.replace("00000001_000", "00000003_000"),
            "00000004_000.png,Mass,0,4,58,M,PA,1024,1024,0.1,0.1,extra,more"]
    index = open_dataset(write_entry(tmp_path / "nih", rows))
    assert index.table["image"].tolist() == ["00000001_000.png", "00000003_000.png"]
    problem = next(p for p in index.problems if "wrong number of fields" in p)
    assert problem.startswith("Data_Entry_2017.csv: 2 rows") and "lines 3, 5" in problem


def test_all_rows_with_wrong_field_counts_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r"Data_Entry_2017.csv: all 2 rows have the wrong number of fields"):
        open_dataset(write_entry(tmp_path / "nih", ["a,b,c", "d,e"]))


def test_missing_required_columns_are_named(tmp_path):
    header = HEADER.replace("Patient ID,", "").replace("View Position,", "")
    with pytest.raises(DatasetError) as caught:
        open_dataset(write_entry(tmp_path / "nih", [ROW], header=header))
    assert "Data_Entry_2017.csv" in str(caught.value)
    assert "Patient ID" in str(caught.value) and "View Position" in str(caught.value)
    assert isinstance(caught.value, UserError)


def test_columns_are_found_by_header_position_even_when_reordered(tmp_path):
    header = ("Patient ID,Image Index,Finding Labels,Follow-up #,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    index = open_dataset(write_entry(tmp_path / "nih", ["7,00000007_000.png,Mass,0,58,M,PA,1024,1000,0.1,0.2"],
                                     header=header))
    row = index.table.iloc[0]
    assert (row["image"], row["patient_id"], row["orig_height"], row["spacing_y"]) == (
        "00000007_000.png", 7, 1000, 0.2)


def test_a_quoted_bracket_header_still_spans_two_data_fields(tmp_path):
    header = HEADER.replace("OriginalImage[Width,Height]", '"OriginalImage[Width,Height]"')
    index = open_dataset(write_entry(tmp_path / "nih", [ROW], header=header))
    assert index.table[["orig_width", "spacing_y"]].iloc[0].tolist() == [1024, 0.143]
    assert index.problems == []


def test_image_names_with_separators_or_dotdot_are_rejected_and_never_opened(tmp_path):
    rows = [ROW, "../evil.png,Mass,0,2,58,M,PA,1,1,1,1", "sub/x.png,Mass,0,3,58,M,PA,1,1,1,1",
            "a\\b.png,Mass,0,4,58,M,PA,1,1,1,1"]
    root = write_entry(tmp_path / "nih", rows)
    (tmp_path / "evil.png").write_bytes(b"")
    index = open_dataset(root)
    assert index.table["image"].tolist() == ["00000001_000.png"]
    problem = next(p for p in index.problems if "'..'" in p)
    assert problem.startswith("Data_Entry_2017.csv: 3 rows") and "lines 3, 4, 5" in problem


def test_unknown_labels_are_kept_in_the_text_and_reported(tmp_path):
    rows = [ROW, "00000002_000.png,Covid|Mass,0,2,58,M,PA,1,1,1,1", "00000003_000.png,Covid,0,3,58,M,PA,1,1,1,1"]
    index = open_dataset(write_entry(tmp_path / "nih", rows))
    assert index.table["finding_labels"].tolist()[1:] == ["Covid|Mass", "Covid"]
    assert index.labels[1].sum() == 1 and not index.labels[2].any()
    assert any("unknown label 'Covid'" in p and "2 rows" in p and "lines 3, 4" in p for p in index.problems)


def test_duplicate_image_rows_keep_the_first(tmp_path):
    rows = [ROW, ROW.replace("Mass", "Nodule")]
    index = open_dataset(write_entry(tmp_path / "nih", rows))
    assert index.table["finding_labels"].tolist() == ["Mass"]
    assert any("seen before" in p and "line 3" in p for p in index.problems)


@pytest.mark.parametrize("rows, message", [([], "no image rows"), (None, "empty")])
def test_empty_dataset_is_an_error(tmp_path, rows, message):
    root = tmp_path / "nih"
    root.mkdir()
    if rows is None:
        (root / "Data_Entry_2017.csv").write_text("")
    else:
        write_entry(root, rows)
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_missing_data_entry_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"no Data_Entry file"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        open_dataset(tmp_path / "nowhere")


def test_corrupt_gzip_is_a_dataset_error(tmp_path):
    (tmp_path / "Data_Entry_2017.csv.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DatasetError, match="Data_Entry_2017.csv.gz: cannot read"):
        open_dataset(tmp_path)


def test_official_split_lists_are_used(tmp_path):
    index = open_dataset(make_root(tmp_path, lists=True))
    split = dict(zip(index.table["image"], index.table["split"]))
    assert {split[n] for n in ("00000003_000.png", "00000003_001.png", "00000013_005.png")} == {"test"}
    assert {split[n] for n in fixture_names() if n[:8] not in ("00000003", "00000013")} <= {"train", "val"}
    assert index.problems == ["Data_Entry_2017.csv: 1 row with Patient Age over 100, up to 414 (line 6); kept"]


def test_official_lists_that_split_a_patient_are_resolved_and_reported(tmp_path):
    root = make_root(tmp_path, lists=True)
    (root / "test_list.txt").write_text("00000001_002.png\n00000003_000.png\n00000003_001.png\n")
    index = open_dataset(root)
    assert set(index.table.loc[index.table["patient_id"] == 1, "split"]) == {"test"}
    assert any("train_val_list.txt: 2 image(s) of 1 patient(s)" in p for p in index.problems)
    assert any("1 image(s) of 1 patient(s) are in neither test_list.txt nor train_val_list.txt" in p
               for p in index.problems)
    assert_no_patient_in_two_splits(index.table)


def assert_no_patient_in_two_splits(table: pd.DataFrame) -> None:
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()


def test_generated_split_is_by_patient_deterministic_and_seeded(tmp_path):
    rows = [f"{p:08d}_{f:03d}.png,Mass,{f},{p},40,M,PA,1,1,1,1" for p in range(1, 201) for f in range(3)]
    root = write_entry(tmp_path / "nih", rows)
    first, again, other = open_dataset(root), open_dataset(root), open_dataset(root, split_seed=1)
    assert_no_patient_in_two_splits(first.table)
    assert first.table["split"].tolist() == again.table["split"].tolist()
    assert first.table["split"].tolist() != other.table["split"].tolist()
    patients = first.table.drop_duplicates("patient_id")["split"].value_counts()
    assert (patients["train"], patients["val"], patients["test"]) == (140, 20, 40)


def test_filters_combine(tmp_path):
    index = open_dataset(make_root(tmp_path, images=fixture_names()[:5]))
    images = index.table["image"].to_numpy()

    def names(**criteria):
        return [n[:12] for n in images[index.filter(**criteria)]]

    assert names(labels=["Infiltration"]) == ["00000003_001", "00000005_006", "00000013_005"]
    assert names(labels=["Infiltration"], match="only") == ["00000005_006"]
    assert names(labels=["Hernia", "Infiltration"], match="all") == ["00000003_001"]
    assert names(labels=["Infiltrate", "Hernia"], match="only") == ["00000003_000", "00000003_001",
                                                                   "00000005_006"]
    assert names(sex="f", view="PA") == ["00000003_000", "00000003_001", "00000005_000", "00000005_006"]
    assert names(age=(70, 100)) == ["00000002_000", "00000003_001", "00000004_000", "00000005_006"]
    assert names(age=(None, 58)) == ["00000001_000", "00000001_001", "00000001_002"]
    assert names(patient=[3, 13]) == ["00000003_000", "00000003_001", "00000013_005"]
    assert names(has_box=True) == ["00000001_002", "00000003_001", "00000004_000"]
    assert names(file_present=False) == [n[:12] for n in fixture_names()[5:]]
    assert names(text="_00", has_box=True, file_present=True) == ["00000001_002"]
    assert names(text="13_") == ["00000013_005"]
    assert index.filter().all()
    with pytest.raises(ValueError):
        index.filter(labels=["Broken Heart"])


def test_label_counts_follow_a_mask(tmp_path):
    index = open_dataset(make_root(tmp_path))
    counts = index.label_counts(index.filter(sex="M"))
    assert counts["Cardiomegaly"] == 3 and counts["Hernia"] == 0


def test_replace_boxes_recounts_boxes_per_image(tmp_path):
    index = open_dataset(make_root(tmp_path))
    edited = pd.DataFrame([("00000002_000.png", "Mass", 1.0, 2.0, 3.0, 4.0)],
                          columns=["image", "label", "x", "y", "w", "h"])
    index.replace_boxes(edited)
    assert index.table["n_boxes"].sum() == 1
    assert index.filter(has_box=True).nonzero()[0].tolist() == [3]
    assert index.summary()["boxes"] == 1


def test_job_reports_progress_and_can_stop(tmp_path):
    root = make_root(tmp_path)
    seen = []
    job = Job(seen.append, min_interval=0)
    open_dataset(root, job=job)
    assert len({p.total for p in seen}) == 1 and seen[-1].done == seen[-1].total == 3 + 3  # 2 numbered folders and the root
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert any("images_002" in p.message for p in seen)
    stopped = Job()
    stopped.request_stop()
    from core.jobs import Cancelled
    with pytest.raises(Cancelled):
        open_dataset(root, job=stopped)


def test_demo_dataset_opens_cleanly(demo_root):
    index = open_dataset(demo_root)
    summary = index.summary()
    assert summary["rows"] >= 7 * 12
    assert summary["images_missing"] == 0 and summary["images_found"] == summary["rows"]
    assert summary["boxes"] > 0
    assert index.problems == []
    for label in ("No Finding", "Atelectasis", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax"):
        assert summary["labels"][label] >= 12
    assert set(index.table["split"]) == {"train", "val", "test"}
    assert_no_patient_in_two_splits(index.table)
    assert set(index.boxes["image"]) <= set(index.table["image"])
