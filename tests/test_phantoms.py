"""The phantom demo dataset: exact NIH layout and quirks, determinism, and findings a model can learn."""
from __future__ import annotations

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
from core.data.phantoms import BBOX_HEADER, render_phantom, write_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
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
    """64 px images, mirrored onto themselves (findings sit on either side), standardised per image."""
    rows, classes = [], []
    for c, name in enumerate(DEFAULT_CLASSES):
        for k in range(per_class):
            image, _ = render_phantom((name,), 128, np.random.default_rng([seed, c, k]))
            small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
            small = (small + small[:, ::-1]) / 2
            rows.append(((small - small.mean()) / small.std()).ravel())
            classes.append(c)
    return np.array(rows), np.array(classes)


def test_classes_are_separable_at_64_px_by_a_linear_model_on_held_out_phantoms():
    train_x, train_y = _features(seed=1, per_class=25)
    test_x, test_y = _features(seed=2, per_class=10)
    targets = np.eye(len(DEFAULT_CLASSES))[train_y] * 2 - 1
    weights = np.linalg.solve(train_x.T @ train_x + 100 * np.eye(train_x.shape[1]), train_x.T @ targets)
    accuracy = float(((test_x @ weights).argmax(1) == test_y).mean())
    assert accuracy > 3 / len(DEFAULT_CLASSES), accuracy  # chance is 1/7


def _chest(name: str, k: int) -> np.ndarray:
    image, _ = render_phantom((name,), 128, np.random.default_rng([3, k]))
    return image.astype(np.float32)


def test_opacities_brighten_the_chest_compared_with_normal_chests():
    def chest_mean(name, k):
        return float(_chest(name, k)[25:95, 15:113].mean())

    normal = np.mean([chest_mean("No Finding", k) for k in range(12)])
    for name in ("Effusion", "Mass", "Atelectasis", "Infiltration"):
        assert np.mean([chest_mean(name, k) for k in range(12)]) > normal + 2, name


def test_every_pneumothorax_shows_more_air_dark_chest_than_any_normal_chest():
    """Air-dark = nearer the air outside the body than the chest's median; normal lungs are not that dark."""
    def dark_fraction(name, k):
        image = _chest(name, k)
        air, chest = np.median(image[120:, :6]), image[25:95, 15:113]
        return float((chest < air + 0.3 * (np.median(chest) - air)).mean())

    normal = [dark_fraction("No Finding", k) for k in range(12)]
    collapsed = [dark_fraction("Pneumothorax", k) for k in range(12)]
    assert min(collapsed) > max(normal), (collapsed, normal)


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
