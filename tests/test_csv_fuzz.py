"""Property: whatever bytes the Data_Entry or BBox file holds, opening the dataset either works or raises
`DatasetError` (a one-line user message), never anything else."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.dataset import DatasetError, _plain_entry_rows, _quoted_entry_rows, open_dataset

FIXTURES = Path(__file__).parent / "fixtures"
ENTRY = (FIXTURES / "Data_Entry_2017.csv").read_bytes()
BBOX = (FIXTURES / "BBox_List_2017.csv").read_bytes()
TRICKY = [b",", b",,,", b'"', b"\r", b"\n", b"\r\n", b"|", b"/", b"..", b"\\", b"\x00", b"\xff", b"Y", b"-1",
          b"1e400", b"nan", b"99999999999999999999999", b" ", b"Infiltrate", b"\xc3\xa9", b"[", b"]", b""]


@st.composite
def mangled(draw, original: bytes) -> bytes:
    """The original file with a few random edits: inserted tricky tokens, deleted or repeated spans."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "repeat", "random"]))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(TRICKY))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 80))]
        else:
            data[at:at] = draw(st.binary(max_size=12))
    return bytes(data)


def open_with(entry: bytes, bbox: bytes) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "Data_Entry_2017.csv").write_bytes(entry)
        (root / "BBox_List_2017.csv").write_bytes(bbox)
        try:
            index = open_dataset(root)
        except DatasetError as error:
            assert "\n" not in str(error).strip()
            return
        assert index.labels.shape == (len(index.table), 15) and index.labels.dtype == bool
        assert len(index.table) > 0
        assert index.table["patient_id"].dtype == np.int64
        assert (index.table.groupby("patient_id")["split"].nunique() == 1).all()
        assert set(index.boxes["image"]) <= set(index.table["image"])
        json.dumps(index.summary())


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mangled(ENTRY))
def test_mangled_data_entry_never_crashes(entry):
    open_with(entry, BBOX)


@FUZZ
@given(mangled(BBOX))
def test_mangled_bbox_list_never_crashes(bbox):
    open_with(ENTRY, bbox)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(entry, bbox):
    open_with(entry, bbox)


def rows_or_error(read, text: str):
    try:
        layout, n_fields, raw, lines, bad_lines = read(Path("Data_Entry_2017.csv"), text)
    except DatasetError as error:
        return str(error)
    return layout, n_fields, {k: list(v) for k, v in raw.items()}, list(lines), list(bad_lines)


@FUZZ
@given(mangled(ENTRY))
def test_fast_reader_agrees_with_the_csv_module_on_unquoted_text(entry):
    text = entry.decode("utf-8", errors="replace").replace("\r\n", "\n")
    text = text.replace('"', "").replace("\0", "").replace("\r", "")
    assert rows_or_error(_plain_entry_rows, text) == rows_or_error(_quoted_entry_rows, text)


STORE_FILE = (b"Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Mass,10,10,20,20\n"
              b"00000002_000.png,'=HYPERLINK(\"x\"),1,2,3,4\n00000002_000.png,Lesion,-1.5,2,3,4\n")


@FUZZ
@given(mangled(STORE_FILE))
def test_a_damaged_annotation_file_opens_or_is_refused_in_one_line(data):
    """Whatever the saved store file holds: the store opens (and saves what it read, which reads back the
    same), or it raises AnnotationError naming the file; the file is never changed by a refused open."""
    import pandas as pd

    from core.data.annotations import PROJECT_FOLDER, AnnotationError, AnnotationStore

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / PROJECT_FOLDER
        folder.mkdir()
        (folder / "annotations.csv").write_bytes(data)
        no_boxes = pd.DataFrame({column: [] for column in ("image", "label", "x", "y", "w", "h")})
        try:
            store = AnnotationStore(Path(temp), no_boxes, {})
        except AnnotationError as error:
            assert "annotations.csv" in str(error) and "\n" not in str(error).strip()
            assert (folder / "annotations.csv").read_bytes() == data
            return
        boxes = store.all_boxes()
        store.save()
        del store
        assert AnnotationStore(Path(temp), no_boxes, {}).all_boxes() == boxes
