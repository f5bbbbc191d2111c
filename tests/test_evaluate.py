"""The quality measures move the right way: label-following beats label-ignoring, copies are caught."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.evaluate import EvaluateConfig, evaluate
from core.evaluation.real_data import RealData, open_real_data
from tests.test_generate import TOY_CLASSES, toy_real_data, write_toy_run


FAST = dict(n=30, classifier_steps=80, pairs=40)


@pytest.fixture(scope="module")
def real():
    images, labels, split = toy_real_data(per_class=40, size=32)
    names = np.array([f"{i + 1:08d}_000.png" for i in range(len(labels))], dtype=object)
    return RealData(images=images, labels=labels, split=split, classes=TOY_CLASSES, source="toy", names=names,
                    patient_ids=np.array([str(i + 1) for i in range(len(labels))], dtype=object))


@pytest.fixture(scope="module")
def follows_report(tmp_path_factory, real):
    run = write_toy_run(tmp_path_factory.mktemp("follows") / "run", "follows")
    return evaluate(EvaluateConfig(run=str(run), **FAST), real=real)


@pytest.fixture(scope="module")
def ignores_report(tmp_path_factory, real):
    run = write_toy_run(tmp_path_factory.mktemp("ignores") / "run", "ignores")
    return evaluate(EvaluateConfig(run=str(run), **FAST), real=real)


def test_a_label_following_generator_scores_high_and_a_label_ignoring_one_near_chance(follows_report,
                                                                                       ignores_report):
    ignoring = ignores_report
    assert follows_report["evaluator"]["held_out_accuracy"] > 0.9
    assert follows_report["conditional_accuracy"]["mean"] > 0.8
    assert ignoring["conditional_accuracy"]["mean"] < 0.6
    assert ignoring["conditional_accuracy"]["chance"] == pytest.approx(1 / 3, abs=1e-3)
    for name in TOY_CLASSES:
        assert follows_report["frechet_distance"]["per_class"][name] < ignoring["frechet_distance"]["per_class"][name]
    assert follows_report["kid"]["overall"] < 0.5 * max(ignoring["kid"]["per_class"].values())


def test_a_generator_that_copies_training_images_is_flagged_and_shows_no_diversity(tmp_path, real):
    train_x, train_y = real.part("train")
    copies = [train_x[np.flatnonzero(train_y == c)[0]] for c in range(3)]
    run = write_toy_run(tmp_path / "run", "copies", copies=copies)
    report = evaluate(EvaluateConfig(run=str(run), **FAST), real=real)
    assert report["memorisation"]["flagged_share"] == 1.0
    assert report["memorisation"]["median_distance_generated"] < 0.01
    assert report["ms_ssim"]["generated_mean"] > 0.99 > report["ms_ssim"]["real_mean"]
    train_rows = np.flatnonzero(real.split == "train")
    copied = {f"{train_rows[np.flatnonzero(train_y == c)[0]] + 1:08d}_000.png" for c in range(3)}
    listed = report["memorisation"]["flagged_images"]
    assert {f["nearest_training_image"] for f in listed} == copied
    assert all(f["nearest_patient_id"] == str(int(f["nearest_training_image"][:8])) for f in listed)
    assert sorted(f["generated_images"] for f in listed) == [30, 30, 30]
    assert report["prdc"]["generated"]["overall"]["recall"] < 0.2  # three images cannot cover the real ones


def test_a_healthy_or_a_blurry_generator_is_not_flagged_as_memorising(follows_report, ignores_report):
    assert ignores_report["memorisation"]["flagged_share"] < 0.1
    memo = follows_report["memorisation"]
    assert memo["flagged_share"] < 0.1
    assert memo["median_ratio_generated"] > 2 * memo["ratio_threshold"]


def test_report_and_plots_are_written_to_the_run_and_the_evaluator_is_reused(tmp_path_factory, real, follows_report):
    out = follows_report["run"] + "/evaluation"
    saved = json.loads(open(out + "/report.json", encoding="utf-8").read())
    assert saved["conditional_accuracy"] == follows_report["conditional_accuracy"]
    assert set(saved["plots"]) == {"confusion", "accuracy", "prdc", "coverage", "diversity", "real_vs_synthetic",
                                   "nearest"}
    for name in saved["plots"].values():
        assert cv2.imread(f"{out}/{name}").shape[0] > 150
    html = open(out + "/report.html", encoding="utf-8").read()
    assert "not tested yet" in html and html.count("data:image/png;base64,") == 7
    again = evaluate(EvaluateConfig(run=follows_report["run"], **FAST), real=real)
    assert follows_report["evaluator"]["cached"] is False and again["evaluator"]["cached"] is True
    assert again["evaluator"]["held_out_accuracy"] == follows_report["evaluator"]["held_out_accuracy"]


def test_the_headline_numbers_go_to_the_runs_tensorboard(follows_report):
    from pathlib import Path

    from tests.test_augment_bench import board_tags

    tags = board_tags(Path(follows_report["run"]))
    assert float(tags["evaluation/frechet_distance_ratio"]) == pytest.approx(
        follows_report["frechet_distance"]["ratio_overall"], rel=1e-5)
    assert float(tags["evaluation/prdc_coverage"]) == pytest.approx(
        follows_report["prdc"]["generated"]["overall"]["coverage"], rel=1e-5)
    assert float(tags["evaluation/conditional_accuracy"]) > 0.5


def test_prdc_and_relative_fd_sit_beside_their_real_reference(follows_report, ignores_report):
    for report in (follows_report, ignores_report):
        fd = report["frechet_distance"]
        assert fd["ratio_overall"] == pytest.approx(fd["overall"] / fd["real_held_out_overall"], rel=1e-2)
        reference = report["prdc"]["real_reference"]["overall"]
        assert reference["precision"] > 0.8 and reference["coverage"] > 0.5
        assert set(report["prdc"]["generated"]["per_class"]) == set(TOY_CLASSES) and report["prdc"]["k"] == 5
    for name in TOY_CLASSES:  # overall, a label-ignoring mixture matches the real mixture; per class it cannot
        assert (follows_report["frechet_distance"]["ratio_per_class"][name]
                < ignores_report["frechet_distance"]["ratio_per_class"][name])


def test_real_data_of_another_size_or_without_the_generators_classes_is_refused(tmp_path):
    from tests.toy_sources import imbalanced_toy_data, write_toy_cache

    cache = write_toy_cache(tmp_path / "cache", imbalanced_toy_data(train_counts=(12, 12), test_per_class=10))
    with pytest.raises(UserError, match="no class Effusion"):
        open_real_data(cache, TOY_CLASSES, 32)
    with pytest.raises(UserError, match="32 px but the generator makes 64 px"):
        open_real_data(cache, TOY_CLASSES[:2], 64)
    assert open_real_data(cache, TOY_CLASSES[:2], 32).counts("test") == {"No Finding": 10, "Mass": 10}


def test_evaluate_command_prepares_the_real_data_and_prints_the_report(demo_root, tmp_path, capsys):
    from cli.main import main
    from core.labels import DEFAULT_CLASSES

    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    code = main(["evaluate", "--run", str(run), "--data", str(demo_root), "--n", "6", "--classifier-steps", "20",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == list(DEFAULT_CLASSES) and report["n_per_class"] == 6
    assert (run / "evaluation" / "report.json").is_file()
    assert main(["evaluate", "--run", str(run), "--data", str(demo_root), "--n", "6", "--classifier-steps", "20"]) == 0
    table = capsys.readouterr().out
    assert "cond acc" in table and "coverage" in table and "Pneumothorax" in table and "report.html" in table
