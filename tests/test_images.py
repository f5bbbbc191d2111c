"""Image decoding to 2-D uint8 gray, and letterbox resizing with boxes that follow the image."""
from __future__ import annotations

import zlib
import struct

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.data.images import ImageReadError, letterbox, load_image


def write_png(path, array) -> str:
    assert cv2.imwrite(str(path), array)
    return str(path)


def test_8bit_gray_comes_back_unchanged(tmp_path):
    gray = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    image = load_image(write_png(tmp_path / "g.png", gray))
    assert image.dtype == np.uint8 and image.shape == (48, 64)
    np.testing.assert_array_equal(image, gray)


def test_rgb_and_rgba_become_luminance(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # pure red
    expected = round(0.299 * 255)
    assert load_image(write_png(tmp_path / "rgb.png", bgr))[0, 0] == pytest.approx(expected, abs=1)
    bgra = np.dstack([bgr, np.full((8, 8), 10, np.uint8)])
    image = load_image(write_png(tmp_path / "rgba.png", bgra))
    assert image.shape == (8, 8) and image[0, 0] == pytest.approx(expected, abs=1)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_palette_png_is_expanded_then_gray(tmp_path):
    """A hand-built 2x1 palette PNG (color type 3): entries 0 = black, 1 = white."""
    header = struct.pack(">IIBBBBB", 2, 1, 8, 3, 0, 0, 0)
    palette = bytes([0, 0, 0, 255, 255, 255])
    pixels = zlib.compress(b"\x00\x00\x01")  # filter byte, then indices 0, 1
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"PLTE", palette) + \
        png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
    path = tmp_path / "palette.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(path), [[0, 255]])


def test_16bit_is_scaled_by_bit_depth_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    image = load_image(write_png(tmp_path / "deep.png", values))
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, [[0, 1, 128, 255]])


def test_16bit_color_is_converted_and_scaled(tmp_path):
    bgr = np.full((4, 4, 3), 65535, np.uint16)
    image = load_image(write_png(tmp_path / "deep_rgb.png", bgr))
    assert image.dtype == np.uint8 and image.shape == (4, 4) and (image == 255).all()


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"not a png at all", "cannot decode"),
])
def test_unreadable_files_raise_one_error_type_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as caught:
        load_image(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, UserError)


def test_truncated_png_raises_image_read_error(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    whole = (tmp_path / "whole.png")
    write_png(whole, noise)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_image(truncated)


def test_missing_file_raises_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="nowhere.png: cannot read"):
        load_image(tmp_path / "nowhere.png")


def test_letterbox_keeps_aspect_ratio_by_padding_with_black():
    wide = np.full((50, 100), 200, np.uint8)
    out, box = letterbox(wide, 64)
    assert out.shape == (64, 64)
    assert (box.scale, box.pad_x, box.pad_y) == (0.64, 0, 16)
    assert (out[:16] == 0).all() and (out[48:] == 0).all()
    assert (out[16:48] == 200).all()


def test_boxes_are_scaled_and_shifted_with_the_image():
    tall = np.zeros((1000, 500), np.uint8)
    tall[100:300, 50:150] = 255
    out, box = letterbox(tall, 100)
    (x, y, w, h), = box.map_boxes(np.array([[50, 100, 100, 200]]))
    assert (x, y, w, h) == pytest.approx((30, 10, 10, 20))
    assert out[int(y) + 2: int(y + h) - 2, int(x) + 2: int(x + w) - 2].min() == 255


def test_load_image_with_size_letterboxes(tmp_path):
    path = write_png(tmp_path / "wide.png", np.full((60, 120), 90, np.uint8))
    image = load_image(path, size=32)
    assert image.shape == (32, 32) and image[0, 0] == 0 and image[16, 16] == 90


def test_enlarging_works_too():
    out, box = letterbox(np.full((10, 20), 7, np.uint8), 40)
    assert out.shape == (40, 40) and box.scale == 2.0 and out[20, 20] == 7
