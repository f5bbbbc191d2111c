"""Issue 11, items 8 and 12: files in a dataset folder that would hang, exhaust memory or flood the output.

A named pipe called `.png`, a PNG that declares 25,000 x 25,000 pixels, a 10 MB CSV field, 100,000
distinct unknown labels, split lists naming images that do not exist, a gzipped BBox list."""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import core.data.images as images
from cli.commands.index import format_summary
from core.data.annotations import AnnotationError, AnnotationStore, Box
from core.data.cache import PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset
from core.data.images import MAX_PIXELS, ImageReadError, load_image

from tests.faults.conftest import FIXTURES

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
BIG = 10 * 2**20


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares `width` x `height` gray pixels, with a little real image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header (BITMAPINFOHEADER, 8 bit) declaring `width` x `height`: a non-PNG format."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 256, 0)
    palette = bytes(range(256)) * 4
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + 64, 0, 0, offset) + info + palette + b"\0" * 64


def first_image(root: Path) -> Path:
    return sorted(root.glob("images_*/images/*.png"))[0]


def in_thread(function, timeout: float = 30):
    """Run `function` in a daemon thread; fail (instead of hanging the suite) if it does not return."""
    result = {}

    def target():
        try:
            result["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{function} still running after {timeout} s: it hangs"
    if "error" in result:
        raise result["error"]
    return result["value"]


# ---- item 8: only regular files, and a pixel limit read from the header

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_called_png_is_reported_never_opened_and_prepare_finishes(dataset, tmp_path):
    victim = first_image(dataset)
    victim.unlink()
    os.mkfifo(victim)
    index = in_thread(lambda: open_dataset(dataset))
    assert index.table.set_index("image").loc[victim.name, "path"] == ""
    assert any("not regular files" in p and victim.name in p for p in index.problems)
    with pytest.raises(ImageReadError, match="named pipe"):
        in_thread(lambda: load_image(victim), timeout=10)
    result = in_thread(lambda: prepare(PrepareConfig(data=str(dataset), out=str(tmp_path / "c"), size=32,
                                                     multi_label="rarest")))
    assert victim.name in dict(result.failed)


def test_folders_and_broken_links_named_png_count_as_missing(dataset):
    victim = first_image(dataset)
    victim.unlink()
    victim.mkdir()
    other = sorted(dataset.glob("images_*/images/*.png"))[1]
    other.unlink()
    other.symlink_to(dataset / "nowhere.png")
    index = open_dataset(dataset)
    paths = index.table.set_index("image")["path"]
    assert paths[victim.name] == "" and paths[other.name] == ""
    assert any("2 PNG name(s) are not regular files" in p for p in index.problems)
    with pytest.raises(ImageReadError, match="a folder"):
        load_image(victim)


def test_a_png_declaring_25000_squared_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(25_000, 25_000))
    assert bomb.stat().st_size < 10_000
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("decoded a decompression bomb"))
    with pytest.raises(ImageReadError, match=r"declares 25000 x 25000 pixels, over the limit of 100 megapixels"):
        load_image(bomb)


@pytest.mark.parametrize("width, height", [(11_000, 10_000), (30_000, 30_000)])
def test_other_formats_are_checked_by_their_header_too(tmp_path, monkeypatch, width, height):
    """11,000 x 10,000 is over our limit but under Pillow's own; 30,000 squared trips Pillow's."""
    bomb = tmp_path / "bomb.png"  # named .png, holding a BMP: it happens
    bomb.write_bytes(bmp_declaring(width, height))
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("decoded a decompression bomb"))
    with pytest.raises(ImageReadError, match="pixels"):
        load_image(bomb)


def test_images_at_the_limit_still_decode(tmp_path):
    side = 256
    assert side * side <= MAX_PIXELS
    path = tmp_path / "ok.bmp"
    import cv2
    assert cv2.imwrite(str(path), np.full((side, side), 7, np.uint8))
    assert load_image(path).shape == (side, side)


def test_an_oversized_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(png_declaring(8, 8) + b"\0" * 2000)
    with pytest.raises(ImageReadError, match="too large"):
        load_image(path)


def test_a_bomb_in_the_dataset_is_counted_as_failed(dataset, tmp_path):
    victim = first_image(dataset)
    victim.write_bytes(png_declaring(25_000, 25_000))
    result = prepare(PrepareConfig(data=str(dataset), out=str(tmp_path / "c"), size=32, multi_label="rarest"))
    reasons = dict(result.failed)
    assert "over the limit of 100 megapixels" in reasons[victim.name]
    assert victim.name not in set(PreparedCache.open(tmp_path / "c").meta["image"])


# ---- item 12: nothing from a file floods a message

def entry_root(tmp_path: Path, rows: list[str], name: str = "Data_Entry_2017.csv") -> Path:
    root = tmp_path / "nih"
    root.mkdir(exist_ok=True)
    (root / name).write_text("\n".join([HEADER, *rows]) + "\n")
    return root


ROW = "00000001_000.png,Mass,0,1,58,M,PA,1024,1024,0.143,0.143"


@pytest.mark.parametrize("quoted", [False, True])
def test_a_10mb_label_is_cut_in_the_problem_list(tmp_path, quoted):
    label = "X" * BIG
    cell = f'"{label}"' if quoted else label
    root = entry_root(tmp_path, [ROW, f"00000002_000.png,{cell},0,2,58,M,PA,1024,1024,0.143,0.143"])
    summary = open_dataset(root).summary()
    text = format_summary(summary)
    assert len(text) < 4000 and max(len(p) for p in summary["problems"]) < 300
    assert summary["rows"] == (1 if quoted else 2)  # a quoted field over 128 KB is an unreadable row
    assert any(("10,485,760 characters" if not quoted else "wrong number of fields") in p
               for p in summary["problems"])


def test_a_10mb_box_label_is_skipped_and_reported_briefly(tmp_path):
    root = entry_root(tmp_path, [ROW])
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                             f"00000001_000.png,{'Y' * BIG},1,2,3,4\n"
                                             "00000001_000.png,Mass,1,2,3,4\n")
    index = open_dataset(root)
    assert list(index.boxes["label"]) == ["Mass"]
    assert any("cannot be read as CSV" in p and "line 2" in p for p in index.problems)
    assert len(format_summary(index.summary())) < 4000


def test_a_hundred_thousand_unknown_labels_give_a_short_problem_list(tmp_path):
    rows = [f"{i:08d}_000.png,Label{i},0,{i},58,M,PA,1024,1024,0.143,0.143" for i in range(1, 100_001)]
    problems = open_dataset(entry_root(tmp_path, rows)).problems
    assert len(problems) <= 12
    assert any("99990 rows with 99990 other unknown labels" in p for p in problems)


def test_annotation_messages_cut_a_huge_image_name(tmp_path):
    no_boxes = pd.DataFrame({column: [] for column in ("image", "label", "x", "y", "w", "h")})
    store = AnnotationStore(tmp_path, no_boxes, {"a.png": "Mass"})
    with pytest.raises(AnnotationError) as caught:
        store.add_box("Z" * BIG, Box("Mass", 1, 1, 2, 2))
    assert len(str(caught.value)) < 300 and "characters" in str(caught.value)


def test_split_list_names_not_in_data_entry_are_reported(tmp_path):
    root = entry_root(tmp_path, [ROW, ROW.replace("00000001_000", "00000003_000").replace(",1,58", ",3,58")])
    shutil.copy(FIXTURES / "test_list_unknown_names.txt", root / "test_list.txt")
    index = open_dataset(root)
    assert any(p.startswith("test_list.txt: 1 image name(s) not in Data_Entry (line 2, e.g. '00000099_000.png')")
               for p in index.problems), index.problems
    assert any("test_list.txt: 1 row with an image name that has a path separator" in p for p in index.problems)
    assert set(index.table["split"]) == {"test"}


def test_gzipped_bbox_list_and_split_lists_are_read(tmp_path):
    root = entry_root(tmp_path, [ROW, ROW.replace("00000001_000", "00000002_000").replace(",1,58", ",2,58")])
    box_text = b"Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000002_000.png,Mass,1,2,3,4\n"
    (root / "BBox_List_2017.csv.gz").write_bytes(gzip.compress(box_text))
    (root / "test_list.txt.gz").write_bytes(gzip.compress(b"00000002_000.png\n"))
    index = open_dataset(root)
    assert list(index.boxes["image"]) == ["00000002_000.png"]
    assert index.table.set_index("image").loc["00000002_000.png", "split"] == "test"
    assert not index.problems or all("neither" in p for p in index.problems)
    (root / "BBox_List_2017.csv").write_bytes(box_text.replace(b"Mass", b"Nodule"))
    index = open_dataset(root)
    assert list(index.boxes["label"]) == ["Nodule"]
    assert any("both BBox_List_2017.csv and BBox_List_2017.csv.gz; using BBox_List_2017.csv" in p
               for p in index.problems)
