"""Decode any NIH-style PNG to 2-D uint8 grayscale, and resize it keeping the aspect ratio.

Conversions (`load_image`):
- gray 8-bit: as is;  BGR/BGRA (RGB/RGBA PNGs): luminance by `cv2.cvtColor`, alpha ignored;
  palette PNGs: OpenCV expands the palette to BGR, then as above; gray+alpha: the gray channel.
- 16-bit: scaled by the full 16-bit depth, `round(v * 255 / 65535)`, never clipped. A PNG whose sBIT
  chunk declares fewer significant bits (say 12) stores its samples already scaled up to the 16-bit
  range (PNG spec, sBIT), so the same rule is right for it too.
Reading is defensive, because image folders hold whatever users copy there: only regular files are
opened (a named pipe called `.png` would block `open()` forever; it is opened non-blocking and refused),
and the image size is read from the header before decoding: an image over `MAX_PIXELS` is refused, as a
1 MB PNG can declare 25,000 x 25,000 pixels and take gigabytes to decode (a "decompression bomb").
Resizing (`letterbox`) keeps the aspect ratio by PADDING (never cropping): the image is scaled so its
longer side fits, centred, and the borders are filled with black (0). Boxes follow via `Letterbox.map_boxes`.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from core.errors import UserError

PAD_VALUE = 0
MAX_PIXELS = 100_000_000  # 100 MP: ten times the largest X-ray detector; the NIH images are 1 MP
MAX_FILE_BYTES = 1 << 30  # a 100 MP 16-bit RGBA PNG stored without compression is 0.8 GB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(UserError):
    """An image file is missing, empty, truncated, corrupt or of an unsupported pixel type."""


@dataclass(frozen=True)
class Letterbox:
    """How an image of `source` size (width, height) was placed in a `size` x `size` square."""

    source: tuple[int, int]
    size: int
    scale: float
    pad_x: int
    pad_y: int

    def map_boxes(self, xywh: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) as x, y, w, h in source pixels -> the same boxes in the letterboxed image."""
        boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        return boxes * self.scale + np.array([self.pad_x, self.pad_y, 0.0, 0.0])


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """The image at `path` as uint8 (H, W); with `size`, letterboxed to (size, size) (see `letterbox`).

    Raises `ImageReadError` naming the file for anything that cannot be decoded.
    """
    data = np.frombuffer(read_regular_file(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    check_pixel_count(data, path)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: corrupt or truncated image (cannot decode)")
    gray = _to_gray_uint8(image, path)
    return gray if size is None else letterbox(gray, size)[0]


def read_regular_file(path: str | os.PathLike) -> bytes:
    """The bytes of `path` if it is a regular file (symlinks followed) of at most `MAX_FILE_BYTES`."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO returns at once instead of waiting for a writer
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(f"{path}: not a regular file ({_file_kind(info.st_mode)}); never read")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageReadError(f"{path}: {info.st_size / 2**30:.1f} GiB is too large for an image file")
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        try:
            return stream.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


def check_pixel_count(data: np.ndarray, path) -> None:
    """Raise `ImageReadError` when the header declares more than `MAX_PIXELS`, before anything is decoded.

    PNG (the NIH format) is read here from its IHDR chunk; other formats through Pillow, which reads
    only the header on `open`. A format neither recognises is left to OpenCV and its own 2^30-pixel limit.
    """
    head = bytes(data[:24])
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
        except Image.DecompressionBombError as error:  # Pillow's own limit is above ours
            raise ImageReadError(f"{path}: {error}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
            return
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"{path}: declares {width} x {height} pixels, over the limit of "
                             f"{MAX_PIXELS // 1_000_000} megapixels (refused without decoding)")


def _to_gray_uint8(image: np.ndarray, path) -> np.ndarray:
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif channels in (1, 2):
            image = image[:, :, 0]
        else:
            raise ImageReadError(f"{path}: unsupported image with {channels} channels")
    if image.ndim != 2:
        raise ImageReadError(f"{path}: unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}")


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Scale `image` so its longer side is `size`, centre it on a black `size` x `size` square (padding,
    never cropping). Shrinking uses INTER_AREA (no aliasing), enlarging INTER_LINEAR."""
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    height, width = image.shape[:2]
    scale = size / max(width, height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    if (new_w, new_h) != (width, height):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    out = np.full((size, size), PAD_VALUE, dtype=image.dtype)
    out[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = image
    return out, Letterbox((width, height), size, scale, pad_x, pad_y)
