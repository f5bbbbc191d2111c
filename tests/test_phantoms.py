"""The phantom demo dataset: exact NIH layout and quirks, determinism, findings of the documented sizes, NIH
proportions with a balanced test split."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.jobs import Cancelled, Job
from core.labels import DEFAULT_CLASSES, split_labels
from core.data.dataset import open_dataset
from core.data.phantoms import (BBOX_HEADER, DIFFICULTIES, FILM_MM, NIH_SINGLE_LABEL_COUNTS, DrawnFinding, Phantom,
                                class_counts, draw_phantom, nih_counts, parse_counts, render_phantom,
                                write_demo_dataset)

ROOT = Path(__file__).resolve().parents[1]
FILM_PX = int(FILM_MM)  # drawn at this size, one pixel is one millimetre
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def _data_rows(root: Path) -> list[list[str]]:
    lines = (root / "Data_Entry_2017.csv").read_bytes().decode().split("\r\n")
    assert lines[-1] == ""
    return [line.split(",") for line in lines[1:-1]]


def _image_files(root: Path) -> dict[str, Path]:
    return {path.name: path for path in root.glob("images_*/images/*.png")}


def test_data_entry_has_the_2017_header_crlf_trailing_comma_and_padded_ages(demo_root):
    raw = (demo_root / "Data_Entry_2017.csv").read_bytes()
    assert raw.startswith(HEADER.encode() + b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n")
    for fields in _data_rows(demo_root):
        assert len(fields) == 12 and fields[-1] == ""
        name, labels, follow_up, patient, age, sex, view = fields[:7]
        assert re.fullmatch(r"\d{8}_\d{3}\.png", name)
        assert re.fullmatch(r"\d{3}Y", age)
        assert patient == name[:8] and int(follow_up) == int(name[9:12])
        assert sex in {"M", "F"} and view in {"PA", "AP"}
        assert int(fields[7]) == int(fields[8]) == 256


def test_every_row_has_its_image_in_at_least_two_nih_folders(demo_root):
    files = _image_files(demo_root)
    names = [fields[0] for fields in _data_rows(demo_root)]
    assert sorted(files) == sorted(names) and names == sorted(names)
    assert len({path.parts[-3] for path in files.values()}) >= 2
    image = cv2.imread(str(files[names[0]]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (256, 256) and image.dtype == np.uint8


def test_each_class_has_its_single_label_images_plus_some_multi_label_rows(demo_root):
    labels = [split_labels(fields[1]) for fields in _data_rows(demo_root)]
    singles = [names[0] for names in labels if len(names) == 1]
    assert {name: singles.count(name) for name in DEFAULT_CLASSES} == {name: 12 for name in DEFAULT_CLASSES}
    multi = [names for names in labels if len(names) > 1]
    assert 0.05 <= len(multi) / len(labels) <= 0.15
    assert all(set(names) <= set(DEFAULT_CLASSES) - {"No Finding"} for names in multi)


def test_patients_have_several_follow_ups(demo_root):
    patients = [fields[3] for fields in _data_rows(demo_root)]
    visits = {patient: patients.count(patient) for patient in patients}
    assert max(visits.values()) >= 3 and len(visits) < len(patients)


def test_bbox_list_has_its_real_header_infiltrate_spelling_and_boxes_inside_the_image(demo_root):
    lines = (demo_root / "BBox_List_2017.csv").read_text().splitlines()
    assert lines[0] == BBOX_HEADER
    labels = {fields[0]: split_labels(fields[1]) for fields in _data_rows(demo_root)}
    seen = set()
    for line in lines[1:]:
        name, label, *numbers = line.split(",")
        x, y, w, h = map(float, numbers[:4])
        assert numbers[4:] == ["", "", ""]
        assert label != "Infiltration"
        assert split_labels(label)[0] in labels[name]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 256 and y + h <= 256
        seen.add(label)
    assert "Infiltrate" in seen and len(lines) - 1 < sum(len(v) for v in labels.values())


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = write_demo_dataset(tmp_path / "a", per_class=2, size=96, seed=5)
    again = write_demo_dataset(tmp_path / "b", per_class=2, size=96, seed=5)
    other = write_demo_dataset(tmp_path / "c", per_class=2, size=96, seed=6)
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    files_a, files_b = _image_files(first), _image_files(again)
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        assert np.array_equal(cv2.imread(str(files_a[name]), 0), cv2.imread(str(files_b[name]), 0))
    assert (first / "Data_Entry_2017.csv").read_bytes() != (other / "Data_Entry_2017.csv").read_bytes()


def _features(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """64 px easy images, mirrored onto themselves (findings sit on either side), standardised per image."""
    rows, classes = [], []
    for c, name in enumerate(DEFAULT_CLASSES):
        for k in range(per_class):
            image, _ = render_phantom((name,), 128, np.random.default_rng([seed, c, k]), difficulty="easy")
            small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
            small = (small + small[:, ::-1]) / 2
            rows.append(((small - small.mean()) / small.std()).ravel())
            classes.append(c)
    return np.array(rows), np.array(classes)


def test_easy_classes_are_separable_at_64_px_by_a_linear_model_on_held_out_phantoms():
    train_x, train_y = _features(seed=1, per_class=25)
    test_x, test_y = _features(seed=2, per_class=10)
    targets = np.eye(len(DEFAULT_CLASSES))[train_y] * 2 - 1
    weights = np.linalg.solve(train_x.T @ train_x + 100 * np.eye(train_x.shape[1]), train_x.T @ targets)
    accuracy = float(((test_x @ weights).argmax(1) == test_y).mean())
    assert accuracy > 3 / len(DEFAULT_CLASSES), accuracy  # chance is 1/7


def _drawn(name: str, difficulty: str, n: int, size: int = FILM_PX, seed: int = 3) -> list[Phantom]:
    return [draw_phantom((name,), size, np.random.default_rng([seed, k]), "AP" if k % 3 == 0 else "PA", difficulty,
                         "F" if k % 2 else "M") for k in range(n)]


def _parts(name: str, difficulty: str, n: int, **kwargs) -> list[DrawnFinding]:
    return [finding for phantom in _drawn(name, difficulty, n, **kwargs) for finding in phantom.findings]


def _equivalent_diameter_mm(finding: DrawnFinding) -> float:
    """Diameter of the disc with the mask's area (pixels are millimetres at FILM_PX)."""
    return 2 * math.sqrt(float(finding.mask.sum()) / math.pi)


def _pose_range(difficulty: str) -> tuple[float, float]:
    low, high = DIFFICULTIES[difficulty].scale
    return low * 0.97, high * 1.03  # and a little for the resampling of the mask


def test_rendering_is_deterministic_and_the_seed_matters():
    for difficulty in DIFFICULTIES:
        first = draw_phantom(("Nodule", "Effusion"), 128, np.random.default_rng([4, 1]), "AP", difficulty, "F")
        again = draw_phantom(("Nodule", "Effusion"), 128, np.random.default_rng([4, 1]), "AP", difficulty, "F")
        other = draw_phantom(("Nodule", "Effusion"), 128, np.random.default_rng([4, 2]), "AP", difficulty, "F")
        assert np.array_equal(first.image, again.image) and not np.array_equal(first.image, other.image)
        assert [f.box for f in first.findings] == [f.box for f in again.findings]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first.findings, again.findings))


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_nodules_are_one_to_three_with_diameters_in_the_documented_range(difficulty):
    d = DIFFICULTIES[difficulty]
    phantoms = _drawn("Nodule", difficulty, 24)
    assert {len(p.findings) for p in phantoms} <= {1, 2, 3}
    diameters = np.array([_equivalent_diameter_mm(f) for p in phantoms for f in p.findings])
    low, high = _pose_range(difficulty)
    assert diameters.min() >= d.nodule_mm[0] * low and diameters.max() <= d.nodule_mm[1] * high, diameters
    if difficulty == "realistic":
        assert np.median(diameters) < np.mean(d.nodule_mm)  # skewed towards small ones
        assert np.mean(diameters >= FILM_MM / 64) >= 0.7  # most are at least a pixel across at 64 px
    for finding in (f for p in phantoms for f in p.findings):
        box_diameter = (finding.box.w + finding.box.h) / 2
        assert abs(box_diameter - _equivalent_diameter_mm(finding)) < 0.15 * box_diameter + 2


def test_realistic_nodules_are_smaller_and_fainter_and_masses_smaller_than_easy_ones():
    for name in ("Nodule", "Mass"):
        easy, real = _parts(name, "easy", 12), _parts(name, "realistic", 12)
        if name == "Nodule":  # a real mass is as dense as the easy one; only its size is unrealistic there
            assert np.mean([f.density for f in real]) < 0.8 * np.mean([f.density for f in easy]), name
        assert np.median([_equivalent_diameter_mm(f) for f in real]) < min(_equivalent_diameter_mm(f) for f in easy)


@pytest.mark.parametrize("difficulty", ["realistic", "hard"])
def test_masses_are_over_3_cm_in_the_documented_range_with_varied_edges(difficulty):
    d = DIFFICULTIES[difficulty]
    masses = _parts("Mass", difficulty, 24)
    diameters = np.array([_equivalent_diameter_mm(f) for f in masses])
    low, high = _pose_range(difficulty)
    assert diameters.min() >= 30 * low * 0.93 and diameters.max() <= d.mass_mm[1] * high * 1.1, diameters
    assert {f.kind for f in masses} == {"smooth", "lobulated", "spiculated"}


def _vertical_extent(mask: np.ndarray) -> float:
    rows = np.flatnonzero((mask > 0.5).any(axis=1))
    return float(rows[-1] - rows[0] + 1) if rows.size else 0.0


def _same_side_lung(phantom: Phantom, mask: np.ndarray) -> np.ndarray:
    """The lungs' mask cut to the image half that holds most of the finding."""
    half = mask.shape[1] // 2
    left = mask[:, :half].sum() > mask[:, half:].sum()
    lung = phantom.lungs.copy()
    lung[:, half:] = 0 if left else lung[:, half:]
    lung[:, :half] = lung[:, :half] if left else 0
    return lung


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_effusions_rise_the_documented_share_of_the_lung_height(difficulty):
    d = DIFFICULTIES[difficulty]
    kinds, heights = [], []
    for phantom in _drawn("Effusion", difficulty, 24):
        (finding,) = phantom.findings
        heights.append(_vertical_extent(finding.mask) / _vertical_extent(_same_side_lung(phantom, finding.mask)))
        kinds.append(finding.kind)
        low, high = d.effusion_small if finding.kind == "small" else d.effusion_large
        assert low - 0.04 <= heights[-1] <= high + 0.04, (finding.kind, heights[-1])
    if difficulty == "easy":
        assert set(kinds) == {"large"} and min(heights) > 0.35
    else:
        assert set(kinds) == {"small", "large"} and min(heights) < d.effusion_large[0]  # some only blunt the angle


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_pneumothorax_leaves_a_darker_rim_of_the_documented_size(difficulty):
    d = DIFFICULTIES[difficulty]
    for phantom in _drawn("Pneumothorax", difficulty, 12, size=200):
        (finding,) = phantom.findings
        air = float(finding.mask.sum()) / float(_same_side_lung(phantom, finding.mask).sum())
        low, high = d.pneumothorax_collapse
        assert 1 - high ** 2 - 0.08 <= air <= 1 - low ** 2 + 0.08, air
        assert finding.density < -0.015


def test_realistic_pneumothorax_rims_are_thinner_and_less_dark_than_easy_ones():
    easy, real = _parts("Pneumothorax", "easy", 10, size=200), _parts("Pneumothorax", "realistic", 10, size=200)
    assert np.mean([f.mask.sum() for f in real]) < 0.7 * np.mean([f.mask.sum() for f in easy])
    assert np.mean([f.density for f in real]) > 0.6 * np.mean([f.density for f in easy])


def test_realistic_atelectasis_is_plate_like_bands_or_lobar_collapse():
    d = DIFFICULTIES["realistic"]
    parts = _parts("Atelectasis", "realistic", 24, size=200)
    assert {f.kind for f in parts} == {"plate", "lobar"}
    plate = [f for f in parts if f.kind == "plate"]
    lobar = [f for f in parts if f.kind == "lobar"]
    assert max(f.mask.sum() for f in plate) < min(f.mask.sum() for f in lobar)
    for finding in plate:  # thickness = twice the deepest point's distance to the band's edge, in mm at 200 px
        inside = (finding.mask > 0.5).astype(np.uint8)
        thickness = 2 * float(cv2.distanceTransform(inside, cv2.DIST_L2, 5).max()) * FILM_MM / 200
        assert thickness <= d.atelectasis_plate_mm[1] * _pose_range("realistic")[1] + 2 * FILM_MM / 200
    assert {f.kind for f in _parts("Atelectasis", "easy", 6, size=200)} == {"lobar"}


def test_realistic_infiltrates_are_fainter_than_easy_ones():
    easy, real = _parts("Infiltration", "easy", 10, size=128), _parts("Infiltration", "realistic", 10, size=128)
    assert all(f.density > 0 for f in real)
    assert np.mean([f.density for f in real]) < 0.85 * np.mean([f.density for f in easy])


def test_no_finding_draws_no_findings_and_every_finding_its_own():
    for name in DEFAULT_CLASSES:
        phantom = draw_phantom((name,), 96, np.random.default_rng([8, 1]))
        assert {f.label for f in phantom.findings} == (set() if name == "No Finding" else {name})
        assert phantom.image.shape == (96, 96) and phantom.image.dtype == np.uint8


def test_refuses_a_non_empty_folder_that_is_not_a_demo_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a demo dataset"):
        write_demo_dataset(tmp_path, per_class=1, size=64)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_rewriting_a_demo_dataset_with_other_settings_leaves_no_stale_images(tmp_path):
    write_demo_dataset(tmp_path / "d", per_class=3, size=64)
    root = write_demo_dataset(tmp_path / "d", per_class=1, size=64)
    assert sorted(_image_files(root)) == sorted(fields[0] for fields in _data_rows(root))


def test_a_cancelled_run_is_rebuilt_by_the_next_one(tmp_path):
    job = Job()
    job.request_stop()
    with pytest.raises(Cancelled):
        write_demo_dataset(tmp_path / "d", per_class=2, size=64, job=job)
    root = write_demo_dataset(tmp_path / "d", per_class=2, size=64)
    assert len(_image_files(root)) == len(_data_rows(root)) > 14


def test_demo_data_command_writes_the_dataset_without_importing_tensorflow(tmp_path):
    code = ("import sys; from cli.main import main; "
            f"code = main(['demo-data', {str(tmp_path / 'd')!r}, '--per-class', '1', '--size', '64']); "
            "print(code, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["0", "False"]
    assert (tmp_path / "d" / "Data_Entry_2017.csv").is_file()


def test_demo_data_command_answers_a_foreign_folder_with_exit_code_2(tmp_path, capsys):
    from cli.main import main

    (tmp_path / "x.png").write_bytes(b"")
    assert main(["demo-data", str(tmp_path), "--per-class", "1", "--size", "64"]) == 2
    assert "not a demo dataset" in capsys.readouterr().err


def test_nih_proportions_scale_the_commonest_class_to_largest_and_lift_rare_ones_to_the_floor():
    counts = nih_counts(largest=280, floor=30)
    assert list(counts) == list(DEFAULT_CLASSES) and counts["No Finding"] == 280
    top = NIH_SINGLE_LABEL_COUNTS["No Finding"]
    for name, n in counts.items():
        assert n == max(30, round(280 * NIH_SINGLE_LABEL_COUNTS[name] / top))
    assert counts["Infiltration"] > counts["Mass"] == 30
    unfloored = nih_counts(largest=6036, floor=0)
    assert unfloored["Mass"] == round(2139 / 10) and unfloored["Infiltration"] == round(9547 / 10)


def _lists(root: Path) -> tuple[set[str], set[str]]:
    return tuple(set((root / name).read_text().split()) for name in ("train_val_list.txt", "test_list.txt"))


def test_nih_demo_set_has_the_proportions_a_balanced_test_split_and_no_patient_in_both(tmp_path):
    root = write_demo_dataset(tmp_path / "nih", size=64, seed=3, proportions="nih", largest=60, floor=8,
                              test_per_class=5)
    rows = {fields[0]: fields for fields in _data_rows(root)}
    train_val, test = _lists(root)
    assert train_val | test == set(rows) and not train_val & test
    assert not {rows[name][3] for name in train_val} & {rows[name][3] for name in test}

    def single_counts(names):
        labels = [split_labels(rows[name][1]) for name in names]
        return {name: sum(1 for ls in labels if ls == [name]) for name in DEFAULT_CLASSES}

    assert single_counts(train_val) == nih_counts(60, 8)
    assert single_counts(test) == {name: 5 for name in DEFAULT_CLASSES} and len(test) == 35
    assert any(len(split_labels(rows[name][1])) > 1 for name in train_val)
    index = open_dataset(root)
    assert not index.problems
    table = index.table.set_index("image")
    assert set(table.index[table["split"] == "test"]) == test


def test_counts_choose_the_classes_and_the_test_set_covers_only_those(tmp_path):
    counts = parse_counts("No Finding=9, mass = 0,Effusion=4,Infiltrate=3")
    assert counts == {"No Finding": 9, "Effusion": 4, "Infiltration": 3}
    root = write_demo_dataset(tmp_path / "d", size=64, counts=counts, test_per_class=2)
    train_val, test = _lists(root)
    rows = {fields[0]: split_labels(fields[1]) for fields in _data_rows(root)}
    assert sorted(name for image in test for name in rows[image]) == sorted(["No Finding", "Effusion",
                                                                             "Infiltration"] * 2)
    assert {name for image in train_val for name in rows[image]} == {"No Finding", "Effusion", "Infiltration"}


@pytest.mark.parametrize("text, message", [
    ("No Finding=10,Pneumonia=3", "unknown class 'Pneumonia'"),
    ("No Finding=ten", "'ten' for No Finding is not a whole number"),
    ("No Finding=0,Mass=0", "add up to zero"),
    ("Mass=-2", "whole number >= 0"),
    ("Mass", "not CLASS=NUMBER"),
    ("Mass=2,Mass=3", "named twice"),
])
def test_bad_counts_are_refused_naming_the_option(text, message):
    with pytest.raises(UserError, match=re.escape(message)) as error:
        parse_counts(text)
    assert str(error.value).startswith("--counts: ")


def test_counts_and_proportions_together_or_unknown_proportions_are_refused(tmp_path):
    with pytest.raises(UserError, match="--proportions or --counts"):
        class_counts(proportions="nih", counts={"Mass": 3})
    with pytest.raises(UserError, match="--proportions 'chexpert'"):
        write_demo_dataset(tmp_path / "d", size=64, proportions="chexpert")
    with pytest.raises(UserError, match="--difficulty 'medium'"):
        write_demo_dataset(tmp_path / "d", size=64, difficulty="medium")
    assert not (tmp_path / "d").exists()


def test_demo_data_command_writes_nih_proportions_and_refuses_bad_counts_with_exit_2(tmp_path, capsys):
    from cli.main import main

    assert main(["demo-data", str(tmp_path / "n"), "--proportions", "nih", "--largest", "40", "--floor", "6",
                 "--test-per-class", "3", "--size", "64", "--difficulty", "hard"]) == 0
    train_val, test = _lists(tmp_path / "n")
    assert len(test) == 21 and len(train_val) > sum(nih_counts(40, 6).values())
    assert main(["demo-data", str(tmp_path / "c"), "--counts", "Mass=3,Hernia=2", "--size", "64"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert errors == ["error: --counts: unknown class 'Hernia'; the phantoms draw " + ", ".join(DEFAULT_CLASSES)]
    assert not (tmp_path / "c").exists()


def test_demo_data_is_a_task_whose_cli_options_come_from_the_config_fields(tmp_path):
    from dataclasses import fields

    from cli.commands.demo_data import add_arguments, build_config
    from core.data.phantoms import DemoConfig
    from core.tasks import TASKS

    parser = __import__("argparse").ArgumentParser()
    add_arguments(parser)
    for f in fields(DemoConfig):
        if f.name != "out":
            assert "--" + f.name.replace("_", "-") in parser.format_help(), f.name
    config = build_config(parser.parse_args([str(tmp_path / "d"), "--counts", "Mass=2,No Finding=3",
                                             "--test-per-class", "1", "--size", "64", "--difficulty", "easy"]))
    assert config == DemoConfig(out=str(tmp_path / "d"), counts="Mass=2,No Finding=3", test_per_class=1, size=64,
                                difficulty="easy")
    root = TASKS["demo-data"](config, Job())
    train_val, test = _lists(root)
    assert len(test) == 2 and len(train_val) >= 5
    assert json_marker(root)["params"]["difficulty"] == "easy"
    with pytest.raises(UserError, match="^--counts: "):
        TASKS["demo-data"](DemoConfig(out=str(tmp_path / "e"), counts="Mass=x"), Job())
    with pytest.raises(UserError, match="output folder"):
        TASKS["demo-data"](DemoConfig(), Job())


def json_marker(root: Path) -> dict:
    import json

    return json.loads((root / ".cxr_demo.json").read_text())


def test_film_extras_are_on_none_of_the_easy_some_realistic_and_all_hard_films(monkeypatch):
    import core.data.phantoms as phantoms

    marked = []
    original = phantoms._film_marks
    monkeypatch.setattr(phantoms, "_film_marks", lambda image, rng, view: marked.append(view) or original(image, rng,
                                                                                                          view))
    for difficulty, low, high in (("easy", 0.0, 0.0), ("realistic", 0.15, 0.5), ("hard", 1.0, 1.0)):
        marked.clear()
        for k in range(80):
            draw_phantom(("No Finding",), 64, np.random.default_rng([9, k]), "AP", difficulty, "M")
        assert low <= len(marked) / 80 <= high, (difficulty, len(marked))
        assert DIFFICULTIES[difficulty].film_extras in (0.0, 1.0) or low < DIFFICULTIES[difficulty].film_extras < high
