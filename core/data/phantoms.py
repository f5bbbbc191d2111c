"""Procedural phantom chest X-rays in the exact NIH ChestX-ray14 layout: the built-in demo dataset.

The real dataset is 45 GB and not on these machines, so the app's first start and the tests use this.
Every image is a chest-like radiograph (body, two lungs, mediastinum and heart, spine, ribs, clavicles,
diaphragm domes) with varied anatomy, contrast and noise, plus the finding(s) of its labels. Findings are
drawn large and distinct enough to survive a 64x64 downscale, because a GAN and a small classifier must
learn them at that size:

- Mass: one large lobulated round opacity (radius 9-13% of the width).
- Nodule: 1-3 small, bright, sharp round opacities (radius 3.5-5% of the width).
- Effusion: bright fluid filling one lung base with a meniscus rising laterally (blunted angle).
- Atelectasis: a dense wedge pointing at the hilum with volume loss (raised hemidiaphragm, shifted heart).
- Infiltration: patchy hazy opacities spread over a lung.
- Pneumothorax: a very dark rim free of lung markings at the apex and lateral side, a thin pleural line
  and a smaller collapsed lung.

Deterministic: every image draws from its own generator seeded by (seed, row number), so the bytes do not
depend on thread scheduling. The CSVs reproduce the 2017 release's quirks (CRLF, trailing comma, ages like
`058Y`, zero-padded ids; the BBox header with empty fields and the `Infiltrate` spelling).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.data.annotations import Box
from core.atomic import atomic_write_text
from core.errors import UserError
from core.jobs import Cancelled, Job
from core.labels import DEFAULT_CLASSES

MARKER = ".cxr_demo.json"
DATA_ENTRY_NAME = "Data_Entry_2017.csv"
BBOX_NAME = "BBox_List_2017.csv"
DATA_ENTRY_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                     "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
BBOX_SPELLING = {"Infiltration": "Infiltrate"}
MULTI_LABEL_PAIRS = (
    ("Effusion", "Infiltration"),
    ("Atelectasis", "Effusion"),
    ("Infiltration", "Nodule"),
    ("Atelectasis", "Infiltration"),
    ("Mass", "Nodule"),
    ("Effusion", "Mass"),
)
MULTI_LABEL_SHARE = 0.10  # of all rows
BOX_SHARE = 0.4  # of the findings get a box, like the real list covers only part of the images
MAX_IMAGES_PER_FOLDER = 5000


@dataclass(frozen=True)
class PhantomRow:
    """One planned image: its Data_Entry fields and the row number that seeds its drawing."""

    image: str
    labels: tuple[str, ...]
    follow_up: int
    patient_id: int
    age: int
    sex: str
    view: str
    number: int


def write_demo_dataset(out, per_class: int = 40, size: int = 512, seed: int = 0, job: Job | None = None) -> Path:
    """Write the phantom dataset into `out` in NIH layout and return its path.

    `out` must be new, empty, or an earlier demo dataset (recognised by its marker file); an identical
    complete one is reused as is, an earlier different one is replaced. Raises UserError otherwise.
    """
    if per_class < 1 or size < 64:
        raise UserError(f"demo data: --per-class must be >= 1 and --size >= 64 (got {per_class}, {size})")
    out = Path(out)
    params = {"per_class": per_class, "size": size, "seed": seed}
    previous = _previous_demo(out)
    if previous is not None and previous.get("params") == params and previous.get("complete"):
        return out
    _clear_previous(out, previous)
    job = job or Job()
    rows = plan_rows(per_class, seed)
    folders = _folder_names(len(rows))
    _write_marker(out, params, folders, complete=False)
    boxes = _write_images(out, rows, folders, size, seed, job)
    atomic_write_text(out / DATA_ENTRY_NAME, _data_entry_text(rows, size), newline="\r\n")
    atomic_write_text(out / BBOX_NAME, _bbox_text(boxes), newline="\n")
    _write_marker(out, params, folders, complete=True)
    return out


def is_demo_dataset(path) -> bool:
    """True for a folder this module wrote (it carries the marker file), complete or not."""
    return (Path(path) / MARKER).is_file()


def plan_rows(per_class: int, seed: int) -> list[PhantomRow]:
    """Labels, patients, follow-ups, ages, sexes and views of every image, sorted by image name."""
    rng = np.random.default_rng([seed, 7919])
    labels: list[tuple[str, ...]] = [(name,) for name in DEFAULT_CLASSES for _ in range(per_class)]
    n_multi = max(1, round(len(labels) * MULTI_LABEL_SHARE / (1 - MULTI_LABEL_SHARE)))
    labels += [MULTI_LABEL_PAIRS[i] for i in rng.integers(0, len(MULTI_LABEL_PAIRS), n_multi)]
    order = rng.permutation(len(labels))
    rows: list[PhantomRow] = []
    patient_id, position = 0, 0
    while position < len(labels):
        patient_id += int(rng.integers(1, 4))
        visits = min(int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])), len(labels) - position)
        sex = "M" if rng.random() < 0.56 else "F"
        first_age = int(rng.integers(16, 88))
        for follow_up in range(visits):
            rows.append(PhantomRow(
                image=f"{patient_id:08d}_{follow_up:03d}.png",
                labels=labels[order[position]],
                follow_up=follow_up,
                patient_id=patient_id,
                age=first_age + follow_up // 2,
                sex=sex,
                view="PA" if rng.random() < 0.6 else "AP",
                number=position,
            ))
            position += 1
    return rows


def render_phantom(labels, size: int, rng: np.random.Generator, view: str = "PA") -> tuple[np.ndarray, list[Box]]:
    """Draw one radiograph with the given findings; returns uint8 (size, size) and its boxes in pixels."""
    findings = [name for name in labels if name != "No Finding"]
    sides = {name: int(rng.integers(0, 2)) for name in findings}
    if "Effusion" in sides and "Pneumothorax" in sides:
        sides["Pneumothorax"] = 1 - sides["Effusion"]
    chest = _Chest(size, rng, view, atelectasis_side=sides.get("Atelectasis"),
                   pneumothorax_side=sides.get("Pneumothorax"))
    image = chest.draw_anatomy()
    boxes: list[Box] = []
    for name in sorted(findings, key=lambda finding: finding == "Effusion"):  # fluid last: it hides what is behind
        box = _FINDINGS[name](chest, image, sides[name])
        if rng.random() < BOX_SHARE:
            boxes.append(Box(BBOX_SPELLING.get(name, name), *box))
    image, boxes = _vary_pose(image, boxes, rng)
    return _finish(image, rng), boxes


class _Chest:
    """The anatomy of one phantom in pixel coordinates, kept so that findings can be placed in a lung."""

    def __init__(self, size, rng, view, atelectasis_side=None, pneumothorax_side=None):
        self.size = size
        self.rng = rng
        self.view = view
        self.atelectasis_side = atelectasis_side
        self.pneumothorax_side = pneumothorax_side
        self.width_scale = rng.uniform(0.9, 1.06)
        self.apex = rng.uniform(0.11, 0.17)
        self.base = rng.uniform(0.72, 0.79)
        self.lung_points = [self._lung_points(side) for side in (0, 1)]
        self.lung_masks = [_poly_mask(points, size, blur=size / 300) for points in self.lung_points]
        self.tissue_masks = list(self.lung_masks)  # where lung markings are (less than the lung after a collapse)
        self._distances: dict[int, np.ndarray] = {}

    def px(self, x, y):
        return np.array([x * self.size, y * self.size], np.float32)

    def _lung_points(self, side):
        """Control points of one lung (side 0 = image left = patient's right), smoothed into a contour."""
        rng = self.rng
        a = self.apex + rng.uniform(-0.01, 0.01)
        c = self.base + (0.025 if side == 1 else 0.0) + rng.uniform(-0.01, 0.01)
        dome = rng.uniform(0.08, 0.11)
        if side == self.atelectasis_side:
            c -= rng.uniform(0.05, 0.08)  # volume loss pulls the hemidiaphragm up
        lat = rng.uniform(0.13, 0.16)
        med = rng.uniform(0.435, 0.455)
        d = c - dome
        points = np.array([
            (0.35, a), (0.27, a + 0.025), (0.205, a + 0.10), (lat + 0.015, a + 0.25), (lat, a + 0.42),
            (lat + 0.004, c), (lat + 0.05, c - 0.05), ((lat + med) / 2 - 0.01, d), (med - 0.04, d + 0.015),
            (med - 0.01, d + 0.02), (med + 0.003, d - 0.03), (med + 0.005, 0.47), (med - 0.012, a + 0.2),
            (0.40, a + 0.035),
        ], np.float32)
        points += rng.normal(0, 0.004, points.shape).astype(np.float32)
        points[:, 0] = 0.5 + (points[:, 0] - 0.5) * self.width_scale
        if side == 1:
            points[:, 0] = 1.0 - points[:, 0]
        return _smooth_closed(points) * self.size

    def hilum(self, side):
        x = 0.5 - 0.09 * self.width_scale
        y = self.apex + 0.27
        return self.px(1 - x if side else x, y)

    def lung_extent(self, side):
        """(x0, y0, x1, y1) of a lung's contour in pixels."""
        pts = self.lung_points[side]
        return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()

    def point_in_lung(self, side, margin=0.0):
        """A random pixel inside a lung and off the heart, at least `margin` pixels from the edge when possible."""
        distance = self._edge_distance(side)
        inside = distance >= margin / 2
        if not inside.any():
            inside = distance > 0
        ys, xs = np.nonzero(inside)
        i = int(self.rng.integers(0, len(xs)))
        return np.array([xs[i] * 2, ys[i] * 2], np.float32)

    def _edge_distance(self, side):
        """Distance (in half-resolution pixels) to the nearest non-lung or heart pixel, computed once per side."""
        if side not in self._distances:
            mask = ((self.lung_masks[side] > 0.5) & (self.heart_mask < 0.3))[::2, ::2].astype(np.uint8)
            self._distances[side] = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        return self._distances[side]

    def draw_anatomy(self) -> np.ndarray:
        """The normal chest as float32 in [0, 1] (bright = dense), before findings and pose."""
        size, rng = self.size, self.rng
        yy = np.linspace(0, 1, size, dtype=np.float32)[:, None]
        body = self._body_mask()
        body_level = rng.uniform(0.38, 0.46) + 0.16 * np.clip((yy - 0.6) / 0.3, 0, 1)
        image = 0.03 + body * (body_level - 0.03)
        image += self._spine() * body
        if self.pneumothorax_side is not None:
            self._collapse_lung(self.pneumothorax_side)
        lung_level = rng.uniform(0.12, 0.18) + 0.05 * np.clip((0.3 - yy) / 0.2, 0, 1) + _texture(size, rng, 0.025)
        for side in (0, 1):
            air = self.lung_masks[side]
            level = lung_level if side != self.pneumothorax_side else 0.02
            image = image * (1 - air) + air * level
            if side == self.pneumothorax_side:
                tissue = self.tissue_masks[side]
                image = image * (1 - tissue) + tissue * (lung_level + 0.06)
        image = self._heart(image)
        lungs = np.clip(self.lung_masks[0] + self.lung_masks[1], 0, 1)
        image += self._markings() + self._ribs() * body * (0.35 + 0.65 * lungs) + self._clavicles()
        if self.pneumothorax_side is not None:
            line = np.zeros((size, size), np.uint8)
            cv2.polylines(line, [_fixed(self.collapsed_points)], True, 255, max(1, size // 256), cv2.LINE_AA, 4)
            side = self.pneumothorax_side
            pleural_space = cv2.dilate(self.lung_masks[side] - self.tissue_masks[side], np.ones((5, 5), np.uint8))
            visible = np.clip(pleural_space * 4, 0, 1) * (1 - self.heart_mask)  # no line along the heart border
            image += 0.16 * cv2.GaussianBlur(line.astype(np.float32) / 255, (0, 0), size / 700) * visible
        return image

    def outside_heart(self):
        """Weight for additive findings: the dense heart shadow hides most of what lies behind it."""
        return 1.0 - 0.75 * self.heart_mask

    def _body_mask(self):
        size, s = self.size, self.width_scale
        mask = np.zeros((size, size), np.uint8)
        centre = (int(size / 2), int(size * 0.6))
        cv2.ellipse(mask, centre, (int(size * 0.43 * s), int(size * 0.58)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        for side in (-1, 1):
            shoulder = (int(size * (0.5 + side * 0.3 * s)), int(size * (self.apex + 0.05)))
            cv2.ellipse(mask, shoulder, (int(size * 0.22), int(size * 0.11)), side * 12, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.rectangle(mask, (int(size * 0.4), 0), (int(size * 0.6), int(size * 0.3)), 255, -1)
        return cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), size / 80)

    def _spine(self):
        size = self.size
        layer = np.zeros((size, size), np.float32)
        yy = np.arange(size, dtype=np.float32)
        vertebrae = 0.07 + 0.03 * np.cos(yy / size * 2 * math.pi * 15)
        half = int(size * 0.035)
        layer[:, size // 2 - half:size // 2 + half] = vertebrae[:, None]
        trachea = np.zeros_like(layer)
        top = int(size * (self.apex + 0.15))
        cv2.rectangle(trachea, (int(size * 0.485), 0), (int(size * 0.515), top), 0.13, -1)
        return cv2.GaussianBlur(layer - trachea, (0, 0), size / 150)

    def _collapse_lung(self, side):
        """Shrink the lung tissue toward the hilum, leaving a dark pleural space at apex and side."""
        factor = self.rng.uniform(0.5, 0.7)
        anchor = self.hilum(side) + np.array([0, self.size * 0.06], np.float32)
        self.collapsed_points = anchor + (self.lung_points[side] - anchor) * factor
        self.tissue_masks[side] = _poly_mask(self.collapsed_points, self.size, blur=self.size / 400)

    def _heart(self, image):
        size, rng, s = self.size, self.rng, self.width_scale
        shift = 0.0
        if self.atelectasis_side is not None:
            shift = (-0.025 if self.atelectasis_side == 0 else 0.025)
        mask = np.zeros((size, size), np.uint8)
        widen = 1.12 if self.view == "AP" else 1.0
        centre = (int(size * (0.55 + shift + rng.uniform(-0.01, 0.02))), int(size * (self.base - rng.uniform(0.11, 0.14))))
        axes = (int(size * 0.17 * s * widen * rng.uniform(0.92, 1.1)), int(size * 0.125 * rng.uniform(0.92, 1.08)))
        cv2.ellipse(mask, centre, axes, rng.uniform(-30, -15), 0, 360, 255, -1, cv2.LINE_AA)
        knob = (int(size * (0.545 + shift)), int(size * (self.apex + 0.16)))
        cv2.circle(mask, knob, int(size * 0.035), 255, -1, cv2.LINE_AA)
        cv2.rectangle(mask, (int(size * 0.45), int(size * self.apex)), (int(size * 0.55), centre[1]), 255, -1)
        heart = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), size / 250)
        self.heart_mask = heart
        return image * (1 - heart) + heart * np.maximum(image, rng.uniform(0.5, 0.58))

    def _markings(self):
        """Vessel trees branching from each hilum into the lung tissue (absent where a lung has collapsed)."""
        size, rng = self.size, self.rng
        layer = np.zeros((size, size), np.uint8)
        for side in (0, 1):
            hilum = self.hilum(side)
            x0, y0, x1, y1 = self.lung_extent(side)
            for _ in range(7):
                target = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)], np.float32)
                direction = target - hilum
                self._branch(layer, hilum, np.arctan2(direction[1], direction[0]), size * 0.09, max(2, size // 110), 3)
        vessels = cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 500)
        return 0.06 * vessels * (self.tissue_masks[0] + self.tissue_masks[1]) * (1 - self.heart_mask)

    def _branch(self, layer, start, angle, length, width, depth):
        """One tapering, slightly bent segment that splits in two until `depth` runs out."""
        angle += self.rng.normal(0, 0.25)
        end = start + length * np.array([np.cos(angle), np.sin(angle)], np.float32)
        cv2.line(layer, tuple(_fixed(start)), tuple(_fixed(end)), 255, max(1, width), cv2.LINE_AA, 4)
        if depth > 1:
            for turn in (-0.45, 0.45):
                self._branch(layer, end, angle + turn, length * 0.75, width - 1, depth - 1)

    def _ribs(self):
        size, rng, s = self.size, self.rng, self.width_scale
        layer = np.zeros((size, size), np.uint8)
        spacing = rng.uniform(0.058, 0.066)
        thickness = max(2, int(size * 0.017))
        u = np.linspace(0, 1, 24, dtype=np.float32)
        for k in range(10):
            y0 = self.apex + 0.01 + k * spacing
            for side in (-1, 1):
                x = 0.5 + side * (0.04 + u * 0.37 * s)
                y = y0 - 0.03 * np.sin(np.pi * u * 0.7) + 0.13 * u ** 2
                cv2.polylines(layer, [_fixed(np.stack([x, y], 1) * size)], False, 255, thickness, cv2.LINE_AA, 4)
        return 0.06 * cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 300)

    def _clavicles(self):
        size, s = self.size, self.width_scale
        layer = np.zeros((size, size), np.uint8)
        y = self.apex + 0.02 + self.rng.uniform(-0.02, 0.01) - (0.02 if self.view == "AP" else 0)
        for side in (-1, 1):
            x = 0.5 + side * np.linspace(0.04, 0.33 * s, 16, dtype=np.float32)
            t = np.linspace(0, 1, 16, dtype=np.float32)
            yy = y - 0.05 * t + 0.015 * np.sin(np.pi * t * 2)
            cv2.polylines(layer, [_fixed(np.stack([x, yy], 1) * size)], False, 255, max(3, int(size * 0.024)), cv2.LINE_AA, 4)
        return 0.14 * cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 300)


def _mass(chest: _Chest, image: np.ndarray, side: int):
    size, rng = chest.size, chest.rng
    radius = size * rng.uniform(0.09, 0.13)
    centre = chest.point_in_lung(side, margin=radius * 0.7)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False, dtype=np.float32)
    wobble = 1 + sum(rng.uniform(-0.07, 0.07) * np.cos(k * angles + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * (radius * wobble)[:, None]
    mask = _poly_mask(points, size, blur=size / 120)
    image += mask * rng.uniform(0.26, 0.34) * chest.outside_heart()
    return _bounds(points)


def _nodule(chest: _Chest, image: np.ndarray, side: int):
    size, rng = chest.size, chest.rng
    layer = np.zeros((size, size), np.float32)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        radius = size * rng.uniform(0.035, 0.05)
        centre = chest.point_in_lung(side if rng.random() < 0.7 else 1 - side, margin=radius * 1.5)
        cv2.circle(layer, tuple(_fixed(centre)), int(radius * 16), 1.0, -1, cv2.LINE_AA, 4)
        boxes.append((centre[0] - radius, centre[1] - radius, 2 * radius, 2 * radius))
    image += cv2.GaussianBlur(layer, (0, 0), size / 400) * rng.uniform(0.32, 0.4) * chest.outside_heart()
    return boxes[0]


def _effusion(chest: _Chest, image: np.ndarray, side: int):
    """Fluid fills the lung base up to a meniscus that rises toward the lateral chest wall."""
    size, rng = chest.size, chest.rng
    x0, y0, x1, y1 = chest.lung_extent(side)
    level = y1 - (y1 - y0) * rng.uniform(0.3, 0.45)
    xx = np.arange(size, dtype=np.float32)[None, :]
    yy = np.arange(size, dtype=np.float32)[:, None]
    lateral = (xx - x1) / (x0 - x1) if side == 0 else (xx - x0) / (x1 - x0)
    surface = level - size * 0.07 * np.clip(lateral, 0, 1) ** 2
    fluid = np.clip((yy - surface) / (size * 0.015), 0, 1)
    region = cv2.dilate(chest.lung_masks[side], np.ones((3, 3), np.uint8), iterations=max(1, size // 128))
    density = rng.uniform(0.42, 0.52) + 0.1 * np.clip((yy - level) / (y1 - level), 0, 1)
    mask = fluid * region
    image[:] = image * (1 - mask) + mask * np.maximum(image, density)
    top = float(surface.min())
    return x0, top, x1 - x0, y1 - top


def _atelectasis(chest: _Chest, image: np.ndarray, side: int):
    """A dense wedge from the hilum to the pleura (lower or upper lobe); the raised dome is in the anatomy."""
    size, rng = chest.size, chest.rng
    x0, y0, x1, y1 = chest.lung_extent(side)
    hilum = chest.hilum(side)
    lateral_x = x0 + 0.12 * (x1 - x0) if side == 0 else x1 - 0.12 * (x1 - x0)
    if rng.random() < 0.6:
        ends = [(lateral_x, y1 - (y1 - y0) * rng.uniform(0.3, 0.4)), (lateral_x, y1 - (y1 - y0) * 0.05)]
    else:
        ends = [(lateral_x, y0 + (y1 - y0) * 0.12), (lateral_x, y0 + (y1 - y0) * rng.uniform(0.35, 0.45))]
    points = np.array([hilum, *ends], np.float32)
    mask = _poly_mask(points, size, blur=size / 200) * chest.lung_masks[side]
    image[:] = image * (1 - mask) + mask * np.maximum(image, rng.uniform(0.45, 0.55))
    return _bounds(points)


def _infiltration(chest: _Chest, image: np.ndarray, side: int):
    """Many soft blobs in one lung (sometimes both), blurred into a patchy haze; the box covers the main lung's."""
    size, rng = chest.size, chest.rng
    layer = np.zeros((size, size), np.float32)
    sides = (side, 1 - side) if rng.random() < 0.25 else (side,)
    main_centres = []
    for s in sides:
        for _ in range(int(rng.integers(14, 24))):
            centre = chest.point_in_lung(s, margin=size * 0.02)
            if s == side:
                main_centres.append(centre)
            cv2.circle(layer, tuple(_fixed(centre)), int(size * rng.uniform(0.02, 0.05) * 16), rng.uniform(0.6, 1.0),
                       -1, cv2.LINE_AA, 4)
    haze = cv2.GaussianBlur(layer, (0, 0), size / 70)
    haze = np.minimum(haze / max(float(haze.max()), 1e-6), 1.0)
    image += haze * rng.uniform(0.22, 0.3) * np.clip(sum(chest.lung_masks), 0, 1) * chest.outside_heart()
    return _bounds(np.array(main_centres), pad=size * 0.04)


def _pneumothorax(chest: _Chest, image: np.ndarray, side: int):
    """Drawn in the anatomy (the lung collapses before the markings); here only its box."""
    return _bounds(chest.lung_points[side])


_FINDINGS = {
    "Atelectasis": _atelectasis,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumothorax": _pneumothorax,
}


def _vary_pose(image, boxes, rng):
    """A small rotation, scale and shift of the whole film; boxes follow as the bounds of their corners."""
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-3, 3), rng.uniform(0.94, 1.04))
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    image = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0.03)
    moved = []
    for box in boxes:
        corners = np.array([[box.x, box.y], [box.x + box.w, box.y], [box.x, box.y + box.h], [box.x + box.w, box.y + box.h]])
        corners = corners @ matrix[:, :2].T + matrix[:, 2]
        lo = np.clip(corners.min(0), 0, size - 1)
        hi = np.clip(corners.max(0), 0, size - 1)
        moved.append(Box(box.label, float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])))
    return image, moved


def _finish(image, rng):
    """Exposure, contrast curve, blur and quantum noise; to uint8."""
    size = image.shape[0]
    image = np.clip(image, 0, 1) ** rng.uniform(0.8, 1.25)
    low, high = rng.uniform(0.0, 0.04), rng.uniform(0.72, 0.9)
    image = (image - low) / (high - low)
    image = cv2.GaussianBlur(image, (0, 0), size / 512 + 0.3)
    image += rng.normal(0, rng.uniform(0.01, 0.03), image.shape).astype(np.float32)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _texture(size, rng, amplitude):
    """Low-frequency parenchymal texture: coarse noise upsampled smoothly."""
    coarse = rng.normal(0, 1, (size // 16 + 1, size // 16 + 1)).astype(np.float32)
    return amplitude * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _smooth_closed(points, steps=12):
    """A closed Catmull-Rom spline through the control points."""
    p = np.asarray(points, np.float32)
    t = np.linspace(0, 1, steps, endpoint=False, dtype=np.float32)[:, None]
    segments = []
    for i in range(len(p)):
        p0, p1, p2, p3 = p[i - 1], p[i], p[(i + 1) % len(p)], p[(i + 2) % len(p)]
        segments.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                               + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3))
    return np.concatenate(segments)


def _fixed(points):
    """Pixel coordinates as cv2 fixed-point integers with 4 fractional bits (drawn with shift=4)."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32)


def _poly_mask(points, size, blur=0.0):
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_fixed(points)], 255, cv2.LINE_AA, 4)
    mask = mask.astype(np.float32) / 255
    return cv2.GaussianBlur(mask, (0, 0), blur) if blur > 0 else mask


def _bounds(points, pad=0.0):
    """(x, y, w, h) around the points, grown by `pad` on every side."""
    points = np.asarray(points, np.float32)
    lo, hi = points.min(0) - pad, points.max(0) + pad
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def _folder_names(n_rows: int) -> list[str]:
    """At least two image folders (like the real twelve), at most MAX_IMAGES_PER_FOLDER images each."""
    count = max(2, math.ceil(n_rows / MAX_IMAGES_PER_FOLDER))
    return [f"images_{i + 1:03d}" for i in range(count)]


def _write_images(out: Path, rows, folders, size, seed, job: Job) -> dict[str, list[Box]]:
    per_folder = math.ceil(len(rows) / len(folders))
    targets = []
    for i, row in enumerate(rows):
        folder = out / folders[i // per_folder] / "images"
        folder.mkdir(parents=True, exist_ok=True)
        targets.append(folder / row.image)

    def draw(i):
        row = rows[i]
        image, boxes = render_phantom(row.labels, size, np.random.default_rng([seed, row.number]), row.view)
        if not cv2.imwrite(str(targets[i]), image):
            raise UserError(f"{targets[i]}: could not write the image")
        return boxes

    boxes: dict[str, list[Box]] = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(draw, i) for i in range(len(rows))]
        try:
            for i, future in enumerate(futures):
                job.check()
                boxes[rows[i].image] = future.result()
                job.report(i + 1, len(rows), "phantoms")
        except Cancelled:
            for future in futures:
                future.cancel()
            raise
    return boxes


def _data_entry_text(rows, size) -> str:
    spacing = 0.143 * 1024 / size
    lines = [DATA_ENTRY_HEADER]
    for row in rows:
        lines.append(f"{row.image},{'|'.join(row.labels)},{row.follow_up},{row.patient_id:08d},{row.age:03d}Y,"
                     f"{row.sex},{row.view},{size},{size},{spacing:.3f},{spacing:.3f},")
    return "\n".join(lines) + "\n"


def _bbox_text(boxes: dict[str, list[Box]]) -> str:
    lines = [BBOX_HEADER]
    for image in sorted(boxes):
        for box in boxes[image]:
            lines.append(f"{image},{box.label},{box.x!r},{box.y!r},{box.w!r},{box.h!r},,,")
    return "\n".join(lines) + "\n"


def _previous_demo(out: Path) -> dict | None:
    """The marker of an earlier demo dataset in `out`; raises UserError if `out` holds anything else."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{out}: folder is not empty and is not a demo dataset; choose a new or empty folder") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{out / MARKER}: unreadable demo dataset marker ({error})") from None


def _clear_previous(out: Path, previous: dict | None) -> None:
    """Remove what an earlier demo run wrote (only the files and folders it names), so no stale image stays."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"{out}: cannot write the demo dataset here ({error.strerror or error})") from None
    if previous is None:
        return
    for name in previous.get("folders", []):
        if name.startswith("images_") and "/" not in name and (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in (DATA_ENTRY_NAME, BBOX_NAME):
        (out / name).unlink(missing_ok=True)


def _write_marker(out: Path, params: dict, folders: list[str], complete: bool) -> None:
    text = json.dumps({"generator": "cxr-workbench phantoms", "params": params, "folders": folders,
                       "complete": complete}, indent=1)
    atomic_write_text(out / MARKER, text, newline="\n")
