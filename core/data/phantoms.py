"""Procedural phantom chest X-rays in the exact NIH ChestX-ray14 layout: the built-in demo dataset.

The real dataset is 45 GB and not on these machines, so the app's first start, the tests and the benches use
this. Every image is a chest-like radiograph (body, two lungs, mediastinum and heart, spine, ribs, clavicles,
diaphragm domes, vessel markings) plus the finding(s) of its labels.

Findings come in three difficulties (`DIFFICULTIES`). Sizes are in millimetres on a film `FILM_MM` = 400 mm
wide (NIH films are 35-43 cm across and 1024 px), so one pixel is about 6 mm at 64 px and 3 mm at 128 px.

- `easy`: the original drawing, large and distinct, for fast unit tests: nodules of 28-40 mm, masses of
  72-104 mm, dense wedge atelectasis, infiltrates and effusions filling half a lung, lungs collapsed to 50-70%.
- `realistic` (the default): sizes and contrasts like real films, tuned so that the project's judge classifier
  still learns every class at 64 px (see `bench/phantom_judge.py`). Nodule: 1-3 of 10-30 mm, log-uniform
  (median 17 mm, about 2.7 px at 64 px and 5.5 px at 128 px), a projected sphere whose peak density falls with
  its thickness, a few calcified. Mass: 30-90 mm, smooth, lobulated or spiculated. Infiltration: faint patchy
  haze around one zone (sometimes both lungs). Effusion: a quarter only blunt the costophrenic angle (fluid
  rising 6-12% of the lung height at the chest wall), the rest reach 12-50%. Atelectasis: plate-like bands
  (5-10 mm thick) with slight volume loss, or segmental/lobar collapse (a dense wedge, a raised
  hemidiaphragm, the heart pulled over). Pneumothorax: the lung shrinks to 68-90% toward its hilum, leaving a
  subtly lucent rim free of markings and a thin pleural line. Plus variation in exposure (window, gamma,
  heel effect), rotation (+-3 deg), magnification, position, patient size and shape, depth of inspiration,
  noise, breast shadows and a stomach bubble; 30% of the films carry side markers, text, collimation edges
  or ECG electrodes with leads.
- `hard`: smaller and fainter still (nodules 3-20 mm, masses 30-60 mm, infiltrates fainter, more blunting-only
  effusions and plate-like atelectasis, lungs shrunk only to 80-93%), with wider variation (+-7 deg) and film
  extras on every film.

`draw_phantom` returns each drawn finding with its mask, box, kind and added density, so tests can measure what
was drawn. `bench/phantom_judge.py` measures how learnable each difficulty is at 64 px.

The dataset: `write_demo_dataset` writes balanced classes (`per_class`), NIH single-label proportions
(`proportions="nih"`, the largest class `largest` images, a floor of `floor`) or explicit `counts`, plus about
10% multi-label rows and patients with follow-ups. With a test set (`test_per_class`; 40 by default with NIH
proportions or counts) it also writes the official split files `train_val_list.txt` / `test_list.txt`: the test
set has exactly `test_per_class` single-label images of every class, and no patient is in both lists.

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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_write_text
from core.data.annotations import Box
from core.errors import UserError
from core.jobs import Cancelled, Job
from core.labels import DEFAULT_CLASSES, canonical_label
from core.options import option

MARKER = ".cxr_demo.json"
DATA_ENTRY_NAME = "Data_Entry_2017.csv"
BBOX_NAME = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
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
MULTI_LABEL_SHARE = 0.10  # of all training rows
BOX_SHARE = 0.4  # of the findings get a box, like the real list covers only part of the images
MAX_IMAGES_PER_FOLDER = 5000
FILM_MM = 400.0  # width of the film in millimetres
# Images carrying exactly one of the seven classes as their only label in the NIH v2020 Data_Entry.
NIH_SINGLE_LABEL_COUNTS = {"No Finding": 60361, "Infiltration": 9547, "Atelectasis": 4215, "Effusion": 3955,
                           "Nodule": 2705, "Pneumothorax": 2194, "Mass": 2139}
PROPORTIONS = ("nih",)


@dataclass(frozen=True)
class Difficulty:
    """Size, contrast and variation ranges of one difficulty. Sizes in mm on the film; densities in the
    drawing's units before exposure (air outside the body 0.03, lung about 0.15, soft tissue about 0.42)."""

    name: str
    nodule_mm: tuple[float, float]  # diameter, log-uniform: small nodules are commoner
    nodule_count: tuple[float, float, float]  # chance of 1, 2, 3 nodules
    nodule_density: tuple[float, float]  # peak added density of a nodule 15 mm or larger
    nodule_calcified: float  # share drawn 1.6x denser (calcified granulomas)
    mass_mm: tuple[float, float]  # diameter, log-uniform
    mass_density: tuple[float, float]
    mass_edges: tuple[str, ...]  # smooth, lobulated, spiculated
    infiltration_density: tuple[float, float]
    infiltration_zone: tuple[float, float] | None  # spread of the patches around one zone (fraction of width)
    effusion_small_share: float  # effusions that only blunt the costophrenic angle
    effusion_small: tuple[float, float]  # fluid height at the chest wall, fraction of the lung's height
    effusion_large: tuple[float, float]
    atelectasis_plate_share: float  # plate-like bands rather than a segmental/lobar wedge
    atelectasis_plate_mm: tuple[float, float]  # band thickness
    atelectasis_plate_density: tuple[float, float]
    atelectasis_lobar_density: tuple[float, float]
    pneumothorax_collapse: tuple[float, float]  # lung size left, as a factor toward its hilum
    pneumothorax_lucency: tuple[float, float] | None  # pleural air below lung level (None: as dark as air)
    pneumothorax_line: tuple[float, float]  # added density of the visceral pleural line
    rotation: float  # degrees either way
    scale: tuple[float, float]
    shift: float  # fraction of the width either way
    gamma: tuple[float, float]
    noise: tuple[float, float]
    real_film: bool  # varied anatomy and exposure, breast shadows, stomach bubble, heel effect
    film_extras: float  # share of real films with side markers, text, collimation edges and ECG electrodes


DIFFICULTIES: dict[str, Difficulty] = {d.name: d for d in (
    Difficulty("easy", nodule_mm=(28, 40), nodule_count=(1 / 3, 1 / 3, 1 / 3), nodule_density=(0.32, 0.4),
               nodule_calcified=0.0, mass_mm=(72, 104), mass_density=(0.26, 0.34), mass_edges=("lobulated",),
               infiltration_density=(0.22, 0.3), infiltration_zone=None, effusion_small_share=0.0,
               effusion_small=(0.0, 0.0), effusion_large=(0.42, 0.57), atelectasis_plate_share=0.0,
               atelectasis_plate_mm=(0, 0), atelectasis_plate_density=(0, 0),
               atelectasis_lobar_density=(0.45, 0.55), pneumothorax_collapse=(0.5, 0.7),
               pneumothorax_lucency=None, pneumothorax_line=(0.16, 0.16), rotation=3, scale=(0.94, 1.04),
               shift=0.03, gamma=(0.8, 1.25), noise=(0.01, 0.03), real_film=False,
               film_extras=0.0),
    Difficulty("realistic", nodule_mm=(10, 30), nodule_count=(0.4, 0.35, 0.25), nodule_density=(0.34, 0.45),
               nodule_calcified=0.15, mass_mm=(30, 90), mass_density=(0.25, 0.35),
               mass_edges=("smooth", "lobulated", "spiculated"), infiltration_density=(0.14, 0.22),
               infiltration_zone=(0.1, 0.18), effusion_small_share=0.25, effusion_small=(0.06, 0.12),
               effusion_large=(0.12, 0.5), atelectasis_plate_share=0.3, atelectasis_plate_mm=(5, 10),
               atelectasis_plate_density=(0.25, 0.35), atelectasis_lobar_density=(0.34, 0.48),
               pneumothorax_collapse=(0.68, 0.9), pneumothorax_lucency=(0.045, 0.09), pneumothorax_line=(0.1, 0.16),
               rotation=3, scale=(0.94, 1.04), shift=0.03, gamma=(0.8, 1.25), noise=(0.01, 0.03), real_film=True,
               film_extras=0.3),
    Difficulty("hard", nodule_mm=(3, 20), nodule_count=(0.6, 0.3, 0.1), nodule_density=(0.15, 0.24),
               nodule_calcified=0.1, mass_mm=(30, 60), mass_density=(0.12, 0.2),
               mass_edges=("smooth", "lobulated", "spiculated"), infiltration_density=(0.06, 0.11),
               infiltration_zone=(0.06, 0.12), effusion_small_share=0.5, effusion_small=(0.03, 0.09),
               effusion_large=(0.09, 0.35), atelectasis_plate_share=0.55, atelectasis_plate_mm=(3, 7),
               atelectasis_plate_density=(0.1, 0.18), atelectasis_lobar_density=(0.22, 0.36),
               pneumothorax_collapse=(0.8, 0.93), pneumothorax_lucency=(0.02, 0.06), pneumothorax_line=(0.05, 0.1),
               rotation=7, scale=(0.86, 1.08), shift=0.06, gamma=(0.65, 1.5), noise=(0.015, 0.05), real_film=True,
               film_extras=1.0),
)}


@dataclass(frozen=True)
class DemoConfig:
    """What demo dataset to write: the `demo-data` task's options (CLI and app build this)."""

    out: str = option("", "New or empty folder (or an earlier demo dataset, which is replaced).")
    difficulty: str = option("realistic", "Finding sizes and contrasts: 'realistic' (like real films), 'hard' "
                                          "(smaller and fainter), 'easy' (large and distinct, for quick tests).",
                             choices=tuple(DIFFICULTIES), label="Difficulty")
    per_class: int = option(40, "Single-label training images per class, all classes alike (without --proportions "
                                "or --counts).", label="Images per class")
    proportions: str = option("", "'nih': the classes in NIH single-label proportions (No Finding 60,361 ... "
                                  "Mass 2,139), the commonest scaled to --largest, none below --floor.",
                              choices=PROPORTIONS, label="Proportions")
    counts: str = option("", 'Single-label training images per class, e.g. "No Finding=280,Mass=30" (classes left '
                             "out get none).", label="Counts")
    largest: int = option(280, "With --proportions: images of the commonest class.", label="Largest class")
    floor: int = option(30, "With --proportions: fewest images of any class.", label="Smallest class")
    test_per_class: int = option(-1, "Balanced test set of this many single-label images per class, listed in "
                                     "test_list.txt (the rest in train_val_list.txt); -1: 40 with --proportions or "
                                     "--counts, else none (readers then split by patient).", label="Test images per class")
    size: int = option(512, "Image side in pixels.", label="Image size (px)")
    seed: int = option(0, "Same seed, same bytes.", label="Seed")


def demo_data(config: DemoConfig, job: Job | None = None) -> Path:
    """The `demo-data` task: `write_demo_dataset` with the config's options (`counts` parsed here)."""
    if not config.out:
        raise UserError("demo data: give the output folder")
    counts = parse_counts(config.counts, "--counts") if config.counts.strip() else None
    return write_demo_dataset(config.out, per_class=config.per_class, size=config.size, seed=config.seed, job=job,
                              difficulty=config.difficulty, proportions=config.proportions or None, counts=counts,
                              largest=config.largest, floor=config.floor,
                              test_per_class=None if config.test_per_class == -1 else config.test_per_class)


@dataclass(frozen=True)
class PhantomRow:
    """One planned image: its Data_Entry fields, its split and the row number that seeds its drawing."""

    image: str
    labels: tuple[str, ...]
    follow_up: int
    patient_id: int
    age: int
    sex: str
    view: str
    number: int
    test: bool = False


def write_demo_dataset(out, per_class: int = 40, size: int = 512, seed: int = 0, job: Job | None = None, *,
                       difficulty: str = "realistic", proportions: str | None = None,
                       counts: dict[str, int] | None = None, largest: int = 280, floor: int = 30,
                       test_per_class: int | None = None) -> Path:
    """Write the phantom dataset into `out` in NIH layout and return its path.

    The single-label training images per class are `per_class` each, or follow `proportions="nih"` (scaled so
    the commonest class has `largest`, none fewer than `floor`), or are the given `counts` (class -> images).
    `test_per_class` adds a balanced test set and the official split lists (default: 40 with proportions or
    counts, none otherwise, when the reader splits by patient itself).

    `out` must be new, empty, or an earlier demo dataset (recognised by its marker file); an identical
    complete one is reused as is, an earlier different one is replaced. Raises UserError otherwise.
    """
    if size < 64:
        raise UserError(f"demo data: --size must be >= 64 (got {size})")
    if difficulty not in DIFFICULTIES:
        raise UserError(f"demo data: --difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
    train_counts = class_counts(per_class, proportions, counts, largest, floor)
    if test_per_class is None:
        test_per_class = 40 if (proportions or counts) else 0
    if test_per_class < 0:
        raise UserError(f"demo data: --test-per-class must be >= 0 (got {test_per_class})")
    out = Path(out)
    params = {"counts": train_counts, "test_per_class": test_per_class, "size": size, "seed": seed,
              "difficulty": difficulty}
    previous = _previous_demo(out)
    if previous is not None and previous.get("params") == params and previous.get("complete"):
        return out
    _clear_previous(out, previous)
    job = job or Job()
    rows = plan_rows(train_counts, seed, test_per_class)
    folders = _folder_names(len(rows))
    _write_marker(out, params, folders, complete=False)
    boxes = _write_images(out, rows, folders, size, seed, DIFFICULTIES[difficulty], job)
    atomic_write_text(out / DATA_ENTRY_NAME, _data_entry_text(rows, size), newline="\r\n")
    atomic_write_text(out / BBOX_NAME, _bbox_text(boxes), newline="\n")
    if test_per_class:
        atomic_write_text(out / TRAIN_VAL_LIST, "".join(f"{r.image}\n" for r in rows if not r.test))
        atomic_write_text(out / TEST_LIST, "".join(f"{r.image}\n" for r in rows if r.test))
    _write_marker(out, params, folders, complete=True)
    return out


def is_demo_dataset(path) -> bool:
    """True for a folder this module wrote (it carries the marker file), complete or not."""
    return (Path(path) / MARKER).is_file()


def nih_counts(largest: int = 280, floor: int = 30) -> dict[str, int]:
    """The seven classes in NIH single-label proportions, the commonest scaled to `largest`, none below `floor`."""
    if largest < 1 or floor < 0:
        raise UserError(f"demo data: --largest must be >= 1 and --floor >= 0 (got {largest}, {floor})")
    top = max(NIH_SINGLE_LABEL_COUNTS.values())
    return {name: max(floor, round(largest * NIH_SINGLE_LABEL_COUNTS[name] / top)) for name in DEFAULT_CLASSES}


def parse_counts(text: str, option: str = "--counts") -> dict[str, int]:
    """`"No Finding=280,Mass=30"` -> {"No Finding": 280, "Mass": 30}; UserError naming `option` otherwise."""
    result: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, equals, number = item.partition("=")
        name = canonical_label(name)
        if not equals:
            raise UserError(f"{option}: {item.strip()!r} is not CLASS=NUMBER")
        if name.lower() in {known.lower() for known in result}:
            raise UserError(f"{option}: {name} is named twice")
        try:
            result[name] = int(number.strip())
        except ValueError:
            raise UserError(f"{option}: {number.strip()!r} for {name} is not a whole number") from None
    return _checked_counts(result, option)


def class_counts(per_class: int = 40, proportions: str | None = None, counts: dict[str, int] | None = None,
                 largest: int = 280, floor: int = 30) -> dict[str, int]:
    """Single-label training images per class (classes with none left out), in `DEFAULT_CLASSES` order."""
    if proportions is not None and counts is not None:
        raise UserError("demo data: give --proportions or --counts, not both")
    if counts is not None:
        return _checked_counts(counts, "--counts")
    if proportions is not None:
        if proportions not in PROPORTIONS:
            raise UserError(f"demo data: --proportions {proportions!r} is not one of {', '.join(PROPORTIONS)}")
        return nih_counts(largest, floor)
    if per_class < 1:
        raise UserError(f"demo data: --per-class must be >= 1 (got {per_class})")
    return {name: per_class for name in DEFAULT_CLASSES}


def _checked_counts(counts: dict[str, int], option: str) -> dict[str, int]:
    """Class names matched to `DEFAULT_CLASSES` (any case, either Infiltration spelling), counts checked."""
    known = {name.lower(): name for name in DEFAULT_CLASSES}
    canonical = {}
    for name, value in counts.items():
        if canonical_label(str(name)).lower() not in known:
            raise UserError(f"{option}: unknown class {str(name).strip()!r}; the phantoms draw "
                            f"{', '.join(DEFAULT_CLASSES)}")
        canonical[known[canonical_label(str(name)).lower()]] = value
    for name, value in canonical.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise UserError(f"{option}: the count of {name} must be a whole number >= 0 (got {value!r})")
    if sum(canonical.values()) == 0:
        raise UserError(f"{option}: the counts add up to zero images")
    return {name: int(canonical[name]) for name in DEFAULT_CLASSES if canonical.get(name, 0) > 0}


def plan_rows(counts: dict[str, int], seed: int, test_per_class: int = 0) -> list[PhantomRow]:
    """Labels, patients, follow-ups, ages, sexes, views and split of every image, sorted by image name.

    Training patients carry the single-label images of `counts` plus about 10% multi-label rows; separate
    test patients carry `test_per_class` single-label images of every counted class. Patients of both kinds
    are interleaved over the id range, like the official lists.
    """
    rng = np.random.default_rng([seed, 7919])
    train = [(name,) for name, n in counts.items() for _ in range(n)]
    pairs = [pair for pair in MULTI_LABEL_PAIRS if set(pair) <= set(counts)]
    if pairs:
        n_multi = max(1, round(len(train) * MULTI_LABEL_SHARE / (1 - MULTI_LABEL_SHARE)))
        train += [pairs[i] for i in rng.integers(0, len(pairs), n_multi)]
    test = [(name,) for name in counts for _ in range(test_per_class)]
    patients = _patients(train, False, rng) + _patients(test, True, rng)
    rows: list[PhantomRow] = []
    patient_id = 0
    for index in rng.permutation(len(patients)):
        visits, is_test = patients[index]
        patient_id += int(rng.integers(1, 4))
        sex = "M" if rng.random() < 0.56 else "F"
        first_age = int(rng.integers(16, 88))
        for follow_up, labels in enumerate(visits):
            rows.append(PhantomRow(
                image=f"{patient_id:08d}_{follow_up:03d}.png",
                labels=labels,
                follow_up=follow_up,
                patient_id=patient_id,
                age=first_age + follow_up // 2,
                sex=sex,
                view="PA" if rng.random() < 0.6 else "AP",
                number=len(rows),
                test=is_test,
            ))
    return rows


def _patients(labels: list[tuple[str, ...]], test: bool, rng) -> list[tuple[list[tuple[str, ...]], bool]]:
    """Shuffle the labels and hand them out to patients of 1-6 visits."""
    order = rng.permutation(len(labels))
    patients, position = [], 0
    while position < len(labels):
        visits = min(int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])), len(labels) - position)
        patients.append(([labels[i] for i in order[position:position + visits]], test))
        position += visits
    return patients


# ------------------------------------------------------------------------------------------- drawing

@dataclass
class DrawnFinding:
    """One drawn finding (one nodule each): its box and mask in final image pixels, what kind it is and the
    mean density it added inside its mask before exposure (negative for pleural air)."""

    label: str
    box: Box
    mask: np.ndarray
    kind: str
    density: float


@dataclass
class Phantom:
    image: np.ndarray  # uint8 (size, size)
    findings: list[DrawnFinding] = field(default_factory=list)
    lungs: np.ndarray | None = None  # float mask of both lungs, final image pixels


@dataclass
class _Part:
    """A finding as drawn, before the pose: coverage mask, (x, y, w, h) bounds, kind, density if not measured."""

    mask: np.ndarray
    bounds: tuple[float, float, float, float]
    kind: str
    density: float | None = None


def render_phantom(labels, size: int, rng: np.random.Generator, view: str = "PA", difficulty: str = "realistic",
                   sex: str = "M") -> tuple[np.ndarray, list[Box]]:
    """Draw one radiograph with the given findings; returns uint8 (size, size) and its BBox-list boxes in
    pixels (about `BOX_SHARE` of the findings get one; for several nodules, the largest)."""
    phantom = draw_phantom(labels, size, rng, view, difficulty, sex)
    largest: dict[str, DrawnFinding] = {}
    for finding in phantom.findings:
        if finding.label not in largest or finding.box.w * finding.box.h > largest[finding.label].box.w * \
                largest[finding.label].box.h:
            largest[finding.label] = finding
    boxes = [finding.box for finding in largest.values() if rng.random() < BOX_SHARE]
    return phantom.image, boxes


def draw_phantom(labels, size: int, rng: np.random.Generator, view: str = "PA", difficulty: str = "realistic",
                 sex: str = "M") -> Phantom:
    """Draw one radiograph and keep what was drawn (see `DrawnFinding`)."""
    d = DIFFICULTIES[difficulty]
    names = [name for name in labels if name != "No Finding"]
    sides = {name: int(rng.integers(0, 2)) for name in names}
    if "Effusion" in sides and "Pneumothorax" in sides:
        sides["Pneumothorax"] = 1 - sides["Effusion"]
    atelectasis = pneumothorax = None
    if "Atelectasis" in sides:
        plate = rng.random() < d.atelectasis_plate_share
        lift = rng.uniform(0.02, 0.045) if plate else rng.uniform(0.04, 0.08) if d.real_film else rng.uniform(0.05, 0.08)
        atelectasis = (sides["Atelectasis"], "plate" if plate else "lobar", lift)
    if "Pneumothorax" in sides:
        pneumothorax = (sides["Pneumothorax"], rng.uniform(*d.pneumothorax_collapse))
    chest = _Chest(size, rng, view, sex, d, atelectasis, pneumothorax)
    image = chest.draw_anatomy()
    drawn: list[tuple[str, _Part]] = []
    for name in sorted(names, key=lambda finding: finding == "Effusion"):  # fluid last: it hides what is behind
        before = image.copy()
        parts = _FINDINGS[name](chest, image, sides[name])
        added = image - before
        for part in parts:
            if part.density is None:
                part.density = float((added * part.mask).sum() / max(float(part.mask.sum()), 1e-6))
            drawn.append((name, part))
    matrix = _pose(size, rng, d)
    image = _warp(image, matrix, border=0.03)
    findings = [DrawnFinding(name, _moved_box(BBOX_SPELLING.get(name, name), part.bounds, matrix, size),
                             _warp(part.mask, matrix), part.kind, part.density) for name, part in drawn]
    lungs = _warp(np.clip(chest.lung_masks[0] + chest.lung_masks[1], 0, 1), matrix)
    return Phantom(_finish(image, rng, d, view), findings, lungs)


class _Chest:
    """The anatomy of one phantom in pixel coordinates, kept so that findings can be placed in a lung."""

    def __init__(self, size, rng, view, sex, d: Difficulty, atelectasis=None, pneumothorax=None):
        self.size, self.rng, self.view, self.sex, self.d = size, rng, view, sex, d
        self.mm = size / FILM_MM
        self.atelectasis_side, self.atelectasis_kind, self.lift = atelectasis or (None, None, 0.0)
        self.pneumothorax_side, self.collapse = pneumothorax or (None, 1.0)
        self.pneumothorax_density = 0.0
        real = d.real_film
        self.width_scale = rng.uniform(0.86, 1.08) if real else rng.uniform(0.9, 1.06)
        self.apex = rng.uniform(0.11, 0.17)
        self.base = rng.uniform(0.7, 0.8) if real else rng.uniform(0.72, 0.79)
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
            c -= self.lift  # volume loss pulls the hemidiaphragm up
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

    def point_in_lung(self, side, margin=0.0, near=None, spread=None):
        """A random pixel inside a lung and off the heart, at least `margin` pixels from the edge when possible;
        with `near` (a point) and `spread` (pixels), drawn with Gaussian weight around that point."""
        distance = self._edge_distance(side)
        inside = distance >= margin / 2
        if not inside.any():
            inside = distance > 0
        ys, xs = np.nonzero(inside)
        if near is None:
            i = int(self.rng.integers(0, len(xs)))
        else:
            weight = np.exp(-((xs * 2 - near[0]) ** 2 + (ys * 2 - near[1]) ** 2) / (2 * spread ** 2)) + 1e-12
            i = int(self.rng.choice(len(xs), p=weight / weight.sum()))
        return np.array([xs[i] * 2, ys[i] * 2], np.float32)

    def _edge_distance(self, side):
        """Distance (in half-resolution pixels) to the nearest non-lung or heart pixel, computed once per side."""
        if side not in self._distances:
            mask = ((self.lung_masks[side] > 0.5) & (self.heart_mask < 0.3))[::2, ::2].astype(np.uint8)
            self._distances[side] = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        return self._distances[side]

    def draw_anatomy(self) -> np.ndarray:
        """The normal chest as float32 in [0, 1] (bright = dense), before findings and pose."""
        size, rng, real = self.size, self.rng, self.d.real_film
        yy = np.linspace(0, 1, size, dtype=np.float32)[:, None]
        body = self._body_mask()
        body_level = rng.uniform(0.36, 0.48) if real else rng.uniform(0.38, 0.46)
        image = 0.03 + body * (body_level + 0.16 * np.clip((yy - 0.6) / 0.3, 0, 1) - 0.03)
        image += self._spine() * body
        if self.pneumothorax_side is not None:
            self._collapse_lung(self.pneumothorax_side)
        lung_base = rng.uniform(0.11, 0.19) if real else rng.uniform(0.12, 0.18)
        lung_level = lung_base + 0.05 * np.clip((0.3 - yy) / 0.2, 0, 1) + _texture(size, rng, 0.025)
        if real:
            lung_level = lung_level + _texture(size, rng, 0.01, cell=max(4, size // 48))
        for side in (0, 1):
            air = self.lung_masks[side]
            if side != self.pneumothorax_side:
                image = image * (1 - air) + air * lung_level
                continue
            lucency = self.d.pneumothorax_lucency
            pleural = 0.02 if lucency is None else max(0.02, lung_base - rng.uniform(*lucency))
            self.pneumothorax_density = pleural - lung_base
            image = image * (1 - air) + air * pleural
            tissue = self.tissue_masks[side]
            image = image * (1 - tissue) + tissue * (lung_level + (rng.uniform(0, 0.03) if real else 0.06))
        image = self._heart(image)
        lungs = np.clip(self.lung_masks[0] + self.lung_masks[1], 0, 1)
        image += self._markings() + self._ribs() * body * (0.35 + 0.65 * lungs) + self._clavicles()
        if real:
            image += self._soft_tissue(body)
            if rng.random() < self.d.film_extras:
                image += self._electrodes()
        if self.pneumothorax_side is not None:
            line = np.zeros((size, size), np.uint8)
            cv2.polylines(line, [_fixed(self.collapsed_points)], True, 255, max(1, size // 256), cv2.LINE_AA, 4)
            side = self.pneumothorax_side
            pleural_space = cv2.dilate(self.lung_masks[side] - self.tissue_masks[side], np.ones((5, 5), np.uint8))
            visible = np.clip(pleural_space * 4, 0, 1) * (1 - self.heart_mask)  # no line along the heart border
            strength = rng.uniform(*self.d.pneumothorax_line)
            image += strength * cv2.GaussianBlur(line.astype(np.float32) / 255, (0, 0), size / 700) * visible
        return image

    def outside_heart(self):
        """Weight for additive findings: the dense heart shadow hides most of what lies behind it."""
        return 1.0 - 0.75 * self.heart_mask

    def _body_mask(self):
        size, s = self.size, self.width_scale
        habitus = self.rng.uniform(0.92, 1.12) if self.d.real_film else 1.0  # soft tissue beyond the ribs
        mask = np.zeros((size, size), np.uint8)
        centre = (int(size / 2), int(size * 0.6))
        cv2.ellipse(mask, centre, (int(size * 0.43 * s * habitus), int(size * 0.58)), 0, 0, 360, 255, -1, cv2.LINE_AA)
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
        anchor = self.hilum(side) + np.array([0, self.size * 0.06], np.float32)
        self.collapsed_points = anchor + (self.lung_points[side] - anchor) * self.collapse
        self.tissue_masks[side] = _poly_mask(self.collapsed_points, self.size, blur=self.size / 400)

    def _heart(self, image):
        size, rng, s = self.size, self.rng, self.width_scale
        shift = 0.0
        if self.atelectasis_side is not None and self.atelectasis_kind == "lobar":
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
        density = rng.uniform(0.46, 0.56) if self.d.real_film else rng.uniform(0.5, 0.58)
        return image * (1 - heart) + heart * np.maximum(image, density)

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
        """Posterior ribs arching down from the spine; on real films also the fainter anterior ribs sloping
        down toward the sternum."""
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
        ribs = 0.06 * cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 300)
        if not self.d.real_film:
            return ribs
        layer[:] = 0
        for k in range(6):
            y0 = self.apex + 0.07 + k * spacing * 1.15
            for side in (-1, 1):
                x = 0.5 + side * (0.41 * s - u * 0.27 * s)
                y = y0 + 0.11 * u - 0.03 * u ** 2
                cv2.polylines(layer, [_fixed(np.stack([x, y], 1) * size)], False, 255, thickness, cv2.LINE_AA, 4)
        return ribs + rng.uniform(0.015, 0.03) * cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 200)

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

    def _soft_tissue(self, body):
        """Breast shadows over the lower zones of most women, and the gas bubble of the stomach under the left
        hemidiaphragm (image right)."""
        size, rng, s = self.size, self.rng, self.width_scale
        layer = np.zeros((size, size), np.float32)
        if self.sex == "F" and rng.random() < 0.85:
            density = rng.uniform(0.03, 0.07)
            y = self.base - rng.uniform(0.02, 0.07)
            for side in (-1, 1):
                centre = (int(size * (0.5 + side * rng.uniform(0.2, 0.25) * s)), int(size * y))
                axes = (int(size * rng.uniform(0.13, 0.17) * s), int(size * rng.uniform(0.1, 0.14)))
                cv2.ellipse(layer, centre, axes, 0, 0, 360, density, -1, cv2.LINE_AA)
            layer = cv2.GaussianBlur(layer, (0, 0), size / 90)
        if rng.random() < 0.7:
            bubble = np.zeros((size, size), np.float32)
            centre = (int(size * (0.5 + rng.uniform(0.1, 0.2) * s)), int(size * (self.base + 0.025 + rng.uniform(0.0, 0.04))))
            axes = (int(size * rng.uniform(0.03, 0.07)), int(size * rng.uniform(0.02, 0.035)))
            cv2.ellipse(bubble, centre, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
            layer -= rng.uniform(0.08, 0.16) * cv2.GaussianBlur(bubble, (0, 0), size / 250) * body
        return layer

    def _electrodes(self):
        """ECG electrodes (a ring round a bright press-stud) with their leads; common on AP (bedside) films."""
        size, rng = self.size, self.rng
        if rng.random() >= (0.2 if self.view == "AP" else 0.03):
            return 0.0
        layer = np.zeros((size, size), np.uint8)
        spots = [(0.2, self.apex + 0.06), (0.8, self.apex + 0.06), (0.22, self.base + 0.05), (0.78, self.base + 0.05),
                 (0.62, self.base - 0.02)]
        for i in rng.permutation(len(spots))[:int(rng.integers(2, 5))]:
            centre = (np.array(spots[i]) + rng.normal(0, 0.03, 2)) * size
            radius = rng.uniform(4, 6) * self.mm
            cv2.circle(layer, tuple(_fixed(centre)), int(radius * 16), 200, max(1, int(1.5 * self.mm)), cv2.LINE_AA, 4)
            cv2.circle(layer, tuple(_fixed(centre)), int(radius * 6), 255, -1, cv2.LINE_AA, 4)
            angle, point, wire = rng.uniform(0, 2 * np.pi), centre, [centre]
            for _ in range(4):
                angle += rng.normal(0, 0.5)
                point = point + size * 0.12 * np.array([np.cos(angle), np.sin(angle)])
                wire.append(point)
            cv2.polylines(layer, [_fixed(wire)], False, 80, max(1, size // 400), cv2.LINE_AA, 4)
        return 0.3 * cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 700)


def _log_uniform(rng, bounds) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _mass(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """A round opacity over 3 cm: smooth, lobulated or spiculated; on real films denser at its centre."""
    size, rng, d = chest.size, chest.rng, chest.d
    radius = chest.mm * _log_uniform(rng, d.mass_mm) / 2
    edge = d.mass_edges[int(rng.integers(0, len(d.mass_edges)))]
    centre = chest.point_in_lung(side, margin=radius * 0.7)
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False, dtype=np.float32)
    amplitude = {"smooth": 0.02, "lobulated": 0.07 if not d.real_film else rng.uniform(0.07, 0.13),
                 "spiculated": 0.04}[edge]
    wobble = 1 + sum(rng.uniform(-amplitude, amplitude) * np.cos(k * angles + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * (radius * wobble)[:, None]
    mask = _poly_mask(points, size)
    density = rng.uniform(*d.mass_density)
    if not d.real_film:
        image += cv2.GaussianBlur(mask, (0, 0), size / 120) * density * chest.outside_heart()
        return [_Part(mask, _bounds(points), edge)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    profile = 0.7 + 0.3 * np.sqrt(np.clip(1 - ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / radius ** 2, 0, 1))
    layer = cv2.GaussianBlur(mask * profile, (0, 0), size / (200 if edge == "lobulated" else 350))
    if edge == "spiculated":
        strands = np.zeros((size, size), np.uint8)
        for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(10, 19))):
            direction = np.array([np.cos(angle), np.sin(angle)], np.float32)
            start, end = centre + direction * radius * 0.85, centre + direction * radius * rng.uniform(1.15, 1.6)
            cv2.line(strands, tuple(_fixed(start)), tuple(_fixed(end)), 255, max(1, round(1.5 * chest.mm)), cv2.LINE_AA, 4)
        layer += 0.5 * cv2.GaussianBlur(strands.astype(np.float32) / 255, (0, 0), size / 600)
    image += layer * density * chest.lung_masks[side] * chest.outside_heart()
    return [_Part(mask, _bounds(points), edge)]


def _nodule(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """1-3 small round opacities; on real films each is a projected sphere, fainter when thinner."""
    size, rng, d = chest.size, chest.rng, chest.d
    layer = np.zeros((size, size), np.float32)
    parts = []
    for _ in range(1 + int(rng.choice(3, p=d.nodule_count))):
        diameter = _log_uniform(rng, d.nodule_mm)
        radius = chest.mm * diameter / 2
        centre = chest.point_in_lung(side if rng.random() < 0.7 else 1 - side, margin=max(radius * 1.5, size * 0.02))
        calcified = rng.random() < d.nodule_calcified
        density = rng.uniform(*d.nodule_density) * (1.6 if calcified else 1.0)
        coverage, sphere = _disc(centre, radius, size)
        if d.real_film:
            layer += sphere * density * (0.7 + 0.3 * min(1.0, diameter / 15))
        else:
            layer += coverage * density
        parts.append(_Part(coverage, (centre[0] - radius, centre[1] - radius, 2 * radius, 2 * radius),
                           "calcified" if calcified else "solid"))
    image += cv2.GaussianBlur(layer, (0, 0), size / 400) * chest.outside_heart()
    return parts


def _effusion(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """Fluid fills the lung base up to a meniscus that is highest at the lateral chest wall; a small one fills
    only the costophrenic angle (blunting), a large one most of the lower lung."""
    size, rng, d = chest.size, chest.rng, chest.d
    x0, y0, x1, y1 = chest.lung_extent(side)
    small = rng.random() < d.effusion_small_share
    top = y1 - (y1 - y0) * rng.uniform(*(d.effusion_small if small else d.effusion_large))
    xx = np.arange(size, dtype=np.float32)[None, :]
    yy = np.arange(size, dtype=np.float32)[:, None]
    lateral = (xx - x1) / (x0 - x1) if side == 0 else (xx - x0) / (x1 - x0)
    surface = top + size * 0.07 * (1 - np.clip(lateral, 0, 1) ** 2)
    fluid = np.clip((yy - surface) / (size * (0.02 if d.real_film else 0.015)), 0, 1)
    region = cv2.dilate(chest.lung_masks[side], np.ones((3, 3), np.uint8), iterations=max(1, size // 128))
    level = float(surface.min())
    density = rng.uniform(0.42, 0.52) + 0.1 * np.clip((yy - level) / max(y1 - level, 1.0), 0, 1)
    mask = fluid * region
    image[:] = image * (1 - mask) + mask * np.maximum(image, density)
    return [_Part(mask, (x0, top, x1 - x0, y1 - top), "small" if small else "large")]


def _atelectasis(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """Lobar: a dense wedge from the hilum to the pleura (lower or upper lobe). Plate-like: 1-3 thin bands
    across the lower zone. The raised hemidiaphragm (and for lobar, the shifted heart) is in the anatomy."""
    size, rng, d = chest.size, chest.rng, chest.d
    x0, y0, x1, y1 = chest.lung_extent(side)
    if chest.atelectasis_kind == "plate":
        bands, ends = np.zeros((size, size), np.float32), []
        n = int(rng.integers(1, 4))
        for i in range(n):  # one band per height slot of the lower zone, so bands never cross
            centre = np.array([rng.uniform(x0 + 0.25 * (x1 - x0), x1 - 0.25 * (x1 - x0)),
                               y0 + (y1 - y0) * (0.5 + 0.3 * (i + rng.uniform(0.25, 0.75)) / n)], np.float32)
            half_length = chest.mm * rng.uniform(25, 60) / 2
            half_width = chest.mm * _log_uniform(rng, d.atelectasis_plate_mm) / 2
            angle = np.deg2rad(rng.uniform(-20, 10) * (1 if side == 0 else -1))
            t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            local = np.stack([half_length * np.cos(t), half_width * np.sin(t)], 1)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            points = centre + local @ rotation.T
            bands = np.maximum(bands, _poly_mask(points, size))
            ends.extend(points)
        mask = bands * chest.lung_masks[side]
        image += cv2.GaussianBlur(mask, (0, 0), size / 600) * rng.uniform(*d.atelectasis_plate_density)
        return [_Part(mask, _bounds(ends), "plate")]
    hilum = chest.hilum(side)
    lateral_x = x0 + 0.12 * (x1 - x0) if side == 0 else x1 - 0.12 * (x1 - x0)
    if rng.random() < 0.6:
        ends = [(lateral_x, y1 - (y1 - y0) * rng.uniform(0.3, 0.4)), (lateral_x, y1 - (y1 - y0) * 0.05)]
    else:
        ends = [(lateral_x, y0 + (y1 - y0) * 0.12), (lateral_x, y0 + (y1 - y0) * rng.uniform(0.35, 0.45))]
    points = np.array([hilum, *ends], np.float32)
    mask = _poly_mask(points, size, blur=size / 200) * chest.lung_masks[side]
    image[:] = image * (1 - mask) + mask * np.maximum(image, rng.uniform(*d.atelectasis_lobar_density))
    return [_Part(mask, _bounds(points), "lobar")]


def _infiltration(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """Soft blobs blurred into a patchy haze: over a whole lung (easy) or around one zone (real films),
    sometimes in both lungs; the box covers the main lung's patches."""
    size, rng, d = chest.size, chest.rng, chest.d
    layer = np.zeros((size, size), np.float32)
    sides = (side, 1 - side) if rng.random() < 0.25 else (side,)
    main_centres = []
    for s in sides:
        zone = chest.point_in_lung(s, margin=size * 0.06) if d.infiltration_zone else None
        spread = size * rng.uniform(*d.infiltration_zone) if d.infiltration_zone else None
        for _ in range(int(rng.integers(14, 24) if not d.real_film else rng.integers(10, 20))):
            centre = chest.point_in_lung(s, margin=size * 0.02, near=zone, spread=spread)
            if s == side:
                main_centres.append(centre)
            cv2.circle(layer, tuple(_fixed(centre)), int(size * rng.uniform(0.02, 0.05) * 16), rng.uniform(0.6, 1.0),
                       -1, cv2.LINE_AA, 4)
    haze = cv2.GaussianBlur(layer, (0, 0), size / 70)
    haze = np.minimum(haze / max(float(haze.max()), 1e-6), 1.0)
    if d.real_film:  # patchy, not a smooth cloud
        haze *= np.clip(1 + _texture(size, rng, 0.45, cell=max(4, size // 24)), 0.2, 1.6)
    lungs = np.clip(sum(chest.lung_masks), 0, 1)
    image += haze * rng.uniform(*d.infiltration_density) * lungs * chest.outside_heart()
    return [_Part((haze > 0.35) * lungs, _bounds(np.array(main_centres), pad=size * 0.04), "patchy")]


def _pneumothorax(chest: _Chest, image: np.ndarray, side: int) -> list[_Part]:
    """Drawn in the anatomy (the lung collapses before the markings); here its pleural air and box."""
    air = np.clip(chest.lung_masks[side] - chest.tissue_masks[side], 0, 1)
    return [_Part(air, _bounds(chest.lung_points[side]), "rim", density=chest.pneumothorax_density)]


_FINDINGS = {
    "Atelectasis": _atelectasis,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumothorax": _pneumothorax,
}


def _pose(size, rng, d: Difficulty) -> np.ndarray:
    """A small rotation, magnification and shift of the whole patient, as a 2x3 affine matrix."""
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-d.rotation, d.rotation), rng.uniform(*d.scale))
    matrix[:, 2] += rng.uniform(-d.shift, d.shift, 2) * size
    return matrix


def _warp(image, matrix, border=0.0):
    size = image.shape[0]
    return cv2.warpAffine(image.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def _moved_box(label, bounds, matrix, size) -> Box:
    """The bounds of the moved corners, clipped to the image."""
    x, y, w, h = bounds
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) @ matrix[:, :2].T + matrix[:, 2]
    lo = np.clip(corners.min(0), 0, size - 1)
    hi = np.clip(corners.max(0), 0, size - 1)
    return Box(label, float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def _finish(image, rng, d: Difficulty, view: str):
    """Film extras, exposure, contrast curve, blur and quantum noise; to uint8."""
    size = image.shape[0]
    if d.real_film:
        image = image * _heel(size, rng)
        if rng.random() < d.film_extras:
            image = _film_marks(image, rng, view)
    image = np.clip(image, 0, 1) ** rng.uniform(*d.gamma)
    low = rng.uniform(0.0, 0.06 if d.real_film else 0.04)
    high = rng.uniform(0.7, 0.92) if d.real_film else rng.uniform(0.72, 0.9)
    image = (image - low) / (high - low)
    image = cv2.GaussianBlur(image, (0, 0), size / 512 + 0.3)
    image += rng.normal(0, rng.uniform(*d.noise), image.shape).astype(np.float32)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _heel(size, rng):
    """Uneven exposure across the film (the anode heel effect): a gentle linear ramp in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return 1 + rng.uniform(0.0, 0.08) * (np.cos(angle) * xx + np.sin(angle) * yy)


def _film_marks(image, rng, view):
    """What is on the film but not in the patient: a side marker, text on bedside films, collimation edges."""
    size = image.shape[0]
    layer = np.zeros((size, size), np.uint8)
    if rng.random() < 0.85:
        right = rng.random() < 0.7  # an R on the image left, or an L on the image right
        x = rng.uniform(0.03, 0.12) if right else rng.uniform(0.84, 0.93)
        _text(layer, "R" if right else "L", x, rng.uniform(0.06, 0.16), 0.035)
    if view == "AP" and rng.random() < 0.5:
        word = ("PORTABLE", "AP", "SUPINE", "AP SITTING")[int(rng.integers(0, 4))]
        _text(layer, word, rng.uniform(0.55, 0.62), rng.uniform(0.04, 0.08), 0.022)
    image = np.maximum(image, cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), size / 700) * 0.95)
    if rng.random() < 0.1:  # a collimator edge: an unexposed strip along one side
        edge, width = int(rng.integers(0, 4)), int(size * rng.uniform(0.01, 0.03))
        region = (slice(None), slice(0, width)) if edge == 0 else (slice(None), slice(size - width, size)) \
            if edge == 1 else (slice(0, width), slice(None)) if edge == 2 else (slice(size - width, size), slice(None))
        image[region] = rng.uniform(0.8, 0.95)
    return image


def _text(layer, text, x, y, height):
    size = layer.shape[0]
    scale = height * size / 22  # FONT_HERSHEY_SIMPLEX capitals are about 22 px high at scale 1
    cv2.putText(layer, text, (int(x * size), int(y * size)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                max(1, round(size / 250)), cv2.LINE_AA)


def _texture(size, rng, amplitude, cell=16):
    """Smooth random texture: coarse noise (one value per `cell` pixels) upsampled smoothly."""
    coarse = rng.normal(0, 1, (size // cell + 1, size // cell + 1)).astype(np.float32)
    return amplitude * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _disc(centre, radius, size, oversample=4):
    """Coverage of a disc and the projected thickness of a sphere (1 at its centre), supersampled so that a
    disc smaller than a pixel keeps its true area."""
    coverage, sphere = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    x0, x1 = max(0, int(centre[0] - radius) - 1), min(size, int(centre[0] + radius) + 2)
    y0, y1 = max(0, int(centre[1] - radius) - 1), min(size, int(centre[1] + radius) + 2)
    if x0 >= x1 or y0 >= y1:
        return coverage, sphere
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    xs = (np.arange(x0, x1)[:, None] + offsets).ravel() - centre[0]
    ys = (np.arange(y0, y1)[:, None] + offsets).ravel() - centre[1]
    inside = 1 - (ys[:, None] ** 2 + xs[None, :] ** 2) / radius ** 2
    shape = (y1 - y0, oversample, x1 - x0, oversample)
    coverage[y0:y1, x0:x1] = (inside > 0).reshape(shape).mean((1, 3))
    sphere[y0:y1, x0:x1] = np.sqrt(np.clip(inside, 0, 1)).reshape(shape).mean((1, 3))
    return coverage, sphere


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


def _write_images(out: Path, rows, folders, size, seed, difficulty: Difficulty, job: Job) -> dict[str, list[Box]]:
    per_folder = math.ceil(len(rows) / len(folders))
    targets = []
    for i, row in enumerate(rows):
        folder = out / folders[i // per_folder] / "images"
        folder.mkdir(parents=True, exist_ok=True)
        targets.append(folder / row.image)

    def draw(i):
        row = rows[i]
        image, boxes = render_phantom(row.labels, size, np.random.default_rng([seed, row.number]), row.view,
                                      difficulty.name, row.sex)
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
    for name in (DATA_ENTRY_NAME, BBOX_NAME, TRAIN_VAL_LIST, TEST_LIST):
        (out / name).unlink(missing_ok=True)


def _write_marker(out: Path, params: dict, folders: list[str], complete: bool) -> None:
    text = json.dumps({"generator": "cxr-workbench phantoms", "params": params, "folders": folders,
                       "complete": complete}, indent=1)
    atomic_write_text(out / MARKER, text, newline="\n")
