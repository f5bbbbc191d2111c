"""NIH-format export: exact header, unique synthetic names, reproducible images, all-or-nothing folders."""
from __future__ import annotations

import csv
import json
import re
import struct

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.csvsafe import neutralise
from core.export.export import Demographics, ExportConfig, export, parse_counts, regenerate
from core.jobs import Cancelled, Job
from tests.test_generate import TOY_CLASSES, write_toy_run

NIH_HEADER_LINE = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                   "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def _demographics():
    """Class 0: young men, PA; class 1: old women, AP; class 2: either."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    return Demographics(age=np.array([20, 22, 80, 81, 40, 60]), sex=np.array(["M", "M", "F", "F", "M", "F"]),
                        view=np.array(["PA", "PA", "AP", "AP", "PA", "AP"]), labels=labels, max_patient_id=30805)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return write_toy_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def exported(toy_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "synthetic"
    config = ExportConfig(run=str(toy_run), out=str(out), counts={"No Finding": 5, "Mass": 30, "Effusion": 7},
                          seed=3, batch_size=16)
    result = export(config, demographics=_demographics())
    assert result.images == 42
    return out


def _rows(out):
    with open(out / "Data_Entry_2017.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _text_chunks(png: bytes) -> dict[str, str]:
    chunks, pos = {}, 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"tEXt":
            key, _, text = png[pos + 8:pos + 8 + length].partition(b"\0")
            chunks[key.decode("latin-1")] = text.decode("latin-1")
        pos += 12 + length
    return chunks


def test_csv_has_exactly_the_nih_header_and_eleven_plain_columns(exported):
    text = (exported / "Data_Entry_2017.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == NIH_HEADER_LINE
    assert "\r" not in text
    rows = _rows(exported)
    assert len(rows) == 42 and all(len(r) == 11 for r in rows)
    for name, label, follow_up, patient, age, sex, view, width, height, sx, sy in rows:
        assert label in TOY_CLASSES and follow_up == "0"
        assert int(patient) >= 90_000_000 and age.isdigit() and sex in "MF" and view in ("PA", "AP")
        assert (width, height) == ("32", "32")
        assert float(sx) == float(sy) == pytest.approx(0.143 * 1024 / 32)


def test_names_are_unique_synthetic_and_cannot_be_nih_names(exported):
    names = [r[0] for r in _rows(exported)]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"synth_[0-9a-f]{10}_\d{6}\.png", n) for n in names)
    assert not any(re.fullmatch(r"\d{8}_\d{3}\.png", n) for n in names)
    assert sorted(p.name for p in (exported / "images").iterdir()) == sorted(names)
    patients = [r[3] for r in _rows(exported)]
    assert len(set(patients)) == len(patients)


def test_labels_and_counts_follow_the_request_and_demographics_follow_the_class(exported):
    rows = _rows(exported)
    assert {c: sum(r[1] == c for r in rows) for c in TOY_CLASSES} == {"No Finding": 5, "Mass": 30, "Effusion": 7}
    mass = [r for r in rows if r[1] == "Mass"]
    assert {(r[4], r[5], r[6]) for r in mass} <= {("80", "F", "AP"), ("81", "F", "AP")}
    normal = [r for r in rows if r[1] == "No Finding"]
    assert {r[5] for r in normal} == {"M"} and {r[6] for r in normal} == {"PA"}


def test_every_png_says_it_is_synthetic_and_names_its_model(exported, toy_run):
    from core.export.generator import file_sha256

    sha = file_sha256(toy_run / "generator.keras")
    for path in list((exported / "images").iterdir())[:5]:
        chunks = _text_chunks(path.read_bytes())
        assert "SYNTHETIC" in chunks["Description"]
        assert sha in chunks["Source"]
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (32, 32)


def test_one_image_regenerated_from_the_manifest_has_identical_pixels(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["model"]["sha256"] and manifest["software"]["tensorflow"]
    assert manifest["model"]["run_config"]["classes"] == TOY_CLASSES
    for entry in (manifest["images"][0], manifest["images"][20], manifest["images"][-1]):
        on_disk = cv2.imread(str(exported / "images" / entry["image"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(regenerate(exported, entry["image"]), on_disk)


def test_a_bfloat16_export_is_close_to_float32_and_regenerates_exactly(toy_run, tmp_path):
    out = tmp_path / "bf16"
    export(ExportConfig(run=str(toy_run), out=str(out), counts={"Mass": 3}, seed=3, precision="bfloat16"),
           demographics=_demographics())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "bfloat16"
    from core.export.generator import load_generator

    full = load_generator(toy_run)
    for entry in manifest["images"]:
        on_disk = cv2.imread(str(out / "images" / entry["image"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(regenerate(out, entry["image"]), on_disk)
        exact = full.generate([entry["label"]], [entry["latent_seed"]])[0]
        assert np.abs(exact.astype(int) - on_disk).max() <= 8


def test_a_cancelled_export_leaves_no_folder_and_no_debris(toy_run, tmp_path):
    job = Job(on_progress=lambda progress: job.request_stop(), min_interval=0.0)
    config = ExportConfig(run=str(toy_run), out=str(tmp_path / "out"), counts={"Mass": 100}, batch_size=16)
    with pytest.raises(Cancelled):
        export(config, job=job, demographics=_demographics())
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_folder_is_kept_without_force_and_foreign_folders_even_with_it(toy_run, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    for force in (False, True):
        config = ExportConfig(run=str(toy_run), out=str(target), counts={"Mass": 2}, force=force)
        with pytest.raises(UserError, match="mine"):
            export(config, demographics=_demographics())
        assert (target / "notes.txt").read_text() == "precious"


def test_force_replaces_an_earlier_export_whole(toy_run, tmp_path):
    target = tmp_path / "export"
    export(ExportConfig(run=str(toy_run), out=str(target), counts={"Mass": 4}, seed=1), demographics=_demographics())
    export(ExportConfig(run=str(toy_run), out=str(target), counts={"Effusion": 2}, seed=2, force=True),
           demographics=_demographics())
    assert [r[1] for r in _rows(target)] == ["Effusion", "Effusion"]
    assert len(list((target / "images").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_export_at_another_size_scales_images_and_pixel_spacing(toy_run, tmp_path):
    out = tmp_path / "big"
    export(ExportConfig(run=str(toy_run), out=str(out), counts={"Mass": 2}, size=64), demographics=_demographics())
    row = _rows(out)[0]
    assert (row[7], row[8]) == ("64", "64") and float(row[9]) == pytest.approx(0.143 * 16)
    assert cv2.imread(str(out / "images" / row[0]), cv2.IMREAD_UNCHANGED).shape == (64, 64)


def test_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    assert [neutralise(v) for v in ("=1+2", "+A1", "-2", "@SUM(A1)", "Mass", 42)] == \
        ["'=1+2", "'+A1", "-2", "'@SUM(A1)", "Mass", "42"]
    run = write_toy_run(tmp_path / "run", classes=["=HYPERLINK(\"http://x\")", "@cmd", "Mass"])
    export(ExportConfig(run=str(run), out=str(tmp_path / "out"), counts={"=HYPERLINK(\"http://x\")": 1, "@cmd": 1}),
           demographics=_demographics())
    assert sorted(r[1] for r in _rows(tmp_path / "out")) == ["'=HYPERLINK(\"http://x\")", "'@cmd"]


def test_counts_text_is_parsed_with_clear_errors():
    assert parse_counts("Mass=200, Nodule=50") == {"Mass": 200, "Nodule": 50}
    assert parse_counts("Infiltrate=3") == {"Infiltration": 3}
    with pytest.raises(UserError, match="Mass200"):
        parse_counts("Mass200")


def test_an_unknown_class_is_a_user_error(toy_run, tmp_path):
    with pytest.raises(UserError, match="Hernia"):
        export(ExportConfig(run=str(toy_run), out=str(tmp_path / "o"), counts={"Hernia": 1}),
               demographics=_demographics())


def test_generate_command_exports_with_demographics_from_a_real_dataset(demo_root, tmp_path, capsys):
    from cli.main import main
    from core.labels import DEFAULT_CLASSES

    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    out = tmp_path / "export"
    code = main(["generate", "--run", str(run), "--out", str(out), "--per-class", "2", "--data", str(demo_root),
                 "--json"])
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["images"] == 2 * len(DEFAULT_CLASSES) and summary["verdict"] == "not_run"
    assert "not tested yet" in captured.err and "warning: these images are not shown to help" in captured.err
    rows = _rows(out)
    assert sorted({r[1] for r in rows}) == sorted(DEFAULT_CLASSES)
    assert all(r[4].isdigit() and 0 < int(r[4]) < 120 and r[5] in ("M", "F") and r[6] in ("PA", "AP") for r in rows)
    assert main(["generate", "--run", str(run), "--out", str(out), "--per-class", "1", "--data", str(demo_root)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_generate_command_refuses_a_file_that_is_not_a_generator(tmp_path, capsys):
    from cli.main import main

    (tmp_path / "config.json").write_text(json.dumps({"size": 32, "latent_dim": 8, "classes": ["Mass"]}))
    (tmp_path / "generator.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["generate", "--run", str(tmp_path), "--out", str(tmp_path / "o"), "--per-class", "1"]) == 2
    assert "generator.keras" in capsys.readouterr().err


def test_the_manifest_records_the_trained_step_the_recipe_and_that_no_bench_was_run(tmp_path):
    run = write_toy_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "steps": 300}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_0000089.npz").write_bytes(b"")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 50}) + "\n" + json.dumps({"step": 89}) + "\n")
    export(ExportConfig(run=str(run), out=str(tmp_path / "out"), counts={"Mass": 2}), demographics=_demographics())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["trained_step"] == 89 and manifest["model"]["configured_steps"] == 300
    assert manifest["recipe"]["name"] == "none" and manifest["augmentation_verdict"]["verdict"] == "not_run"


def test_a_truncated_export_regenerates_exactly_and_differs_from_plain_samples(toy_run, tmp_path, monkeypatch):
    from core.evaluation import recipe

    monkeypatch.setitem(recipe.RECIPES, "half", recipe.Recipe("half", truncation=0.5))
    out, plain = tmp_path / "half", tmp_path / "plain"
    export(ExportConfig(run=str(toy_run), out=str(out), counts={"Mass": 3}, seed=4, recipe="half"),
           demographics=_demographics())
    export(ExportConfig(run=str(toy_run), out=str(plain), counts={"Mass": 3}, seed=4), demographics=_demographics())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["truncation"] == 0.5
    entry = manifest["images"][0]
    on_disk = cv2.imread(str(out / "images" / entry["image"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(regenerate(out, entry["image"]), on_disk)
    assert not np.array_equal(on_disk, cv2.imread(str(plain / "images" / entry["image"]), cv2.IMREAD_UNCHANGED))


def test_recommended_counts_come_from_the_bench_else_top_the_minority_up(tmp_path):
    from core.export.export import recommended_counts
    from core.export.generator import load_generator
    from tests.toy_sources import imbalanced_toy_data, write_toy_cache

    run = write_toy_run(tmp_path / "run")
    cache = write_toy_cache(tmp_path / "cache", imbalanced_toy_data(train_counts=(30, 10, 20), test_per_class=10))
    generator = load_generator(run)
    counts, note = recommended_counts(generator, str(cache))
    assert counts == {"Mass": 20, "Effusion": 10} and "no augmentation bench" in note
    (run / "evaluation").mkdir()
    (run / "evaluation" / "augment_bench.json").write_text(json.dumps(
        {"created": "2026-11-26", "verdict": {"verdict": "helps"},
         "recommended": {"counts": {"No Finding": 0, "Mass": 7, "Effusion": 3}}}))
    counts, note = recommended_counts(generator, str(cache))
    assert counts == {"Mass": 7, "Effusion": 3} and "2026-11-26" in note
    export(ExportConfig(run=str(run), out=str(tmp_path / "out"), counts="recommended", data=str(cache)),
           demographics=_demographics())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == {"Mass": 7, "Effusion": 3}
    assert manifest["augmentation_verdict"]["verdict"] == "helps"


def test_per_class_and_counts_together_or_neither_are_refused(toy_run, tmp_path):
    for config in (ExportConfig(run=str(toy_run), out=str(tmp_path / "a"), counts="Mass=1", per_class=2),
                   ExportConfig(run=str(toy_run), out=str(tmp_path / "b"))):
        with pytest.raises(UserError, match="--per-class"):
            export(config, demographics=_demographics())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_recommended_recipe_ships_no_image_its_judge_puts_in_another_class(tmp_path, monkeypatch):
    from functools import partial

    from core.evaluation import classifier
    from tests.toy_sources import imbalanced_toy_data, write_toy_cache

    monkeypatch.setattr(classifier, "ClassifierConfig", partial(classifier.ClassifierConfig, steps=80))
    cache = write_toy_cache(tmp_path / "cache", imbalanced_toy_data(train_counts=(30, 30, 30), test_per_class=10))
    follows, mislabels = write_toy_run(tmp_path / "follows", "follows"), write_toy_run(tmp_path / "mis", "mislabels")
    for run, passed in ((follows, 6), (mislabels, 0)):
        out = tmp_path / f"out_{run.name}"
        result = export(ExportConfig(run=str(run), out=str(out), counts="Mass=6", data=str(cache),
                                     recipe="recommended"), demographics=_demographics())
        assert result.screening["per_class"]["Mass"]["passed"] == passed
        assert result.screening["per_class"]["Mass"]["below_bar"] == 6 - passed
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["screening"] == result.screening and manifest["recipe"]["min_confidence"] > 0
        entry = manifest["images"][-1]
        np.testing.assert_array_equal(regenerate(out, entry["image"]),
                                      cv2.imread(str(out / "images" / entry["image"]), cv2.IMREAD_UNCHANGED))
