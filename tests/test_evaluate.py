"""The quality measures move the right way: label-following beats label-ignoring, copies are caught."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.evaluation.evaluate import (EvaluateConfig, RealData, evaluate, frechet_distance, kernel_inception_distance,
                           mean_pairwise_ms_ssim, memorisation_ratios, ms_ssim, ms_ssim_scales, nearest_distances,
                           pixel_vectors)
from tests.test_generate import TOY_CLASSES, toy_real_data, write_toy_run

FAST = dict(n=30, classifier_steps=80, pairs=40)


@pytest.fixture(scope="module")
def real():
    images, labels, split = toy_real_data(per_class=40, size=32)
    return RealData(images=images, labels=labels, split=split, classes=TOY_CLASSES, source="toy")


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


def test_a_healthy_or_a_blurry_generator_is_not_flagged_as_memorising(follows_report, ignores_report):
    assert ignores_report["memorisation"]["flagged_share"] < 0.1
    memo = follows_report["memorisation"]
    assert memo["flagged_share"] < 0.1
    assert memo["median_ratio_generated"] > 2 * memo["ratio_threshold"]


def test_report_and_plots_are_written_to_the_run_and_the_evaluator_is_reused(tmp_path_factory, real, follows_report):
    out = follows_report["run"] + "/evaluation"
    saved = json.loads(open(out + "/report.json", encoding="utf-8").read())
    assert saved["conditional_accuracy"] == follows_report["conditional_accuracy"]
    assert set(saved["plots"]) == {"confusion", "accuracy", "diversity", "nearest"}
    for name in saved["plots"].values():
        assert cv2.imread(f"{out}/{name}").shape[0] > 50
    again = evaluate(EvaluateConfig(run=follows_report["run"], **FAST), real=real)
    assert follows_report["evaluator"]["cached"] is False and again["evaluator"]["cached"] is True
    assert again["evaluator"]["held_out_accuracy"] == follows_report["evaluator"]["held_out_accuracy"]


def test_frechet_distance_is_zero_for_the_same_features_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near, far = frechet_distance(a, a + 0.5), frechet_distance(a, a + 2.0)
    assert near == pytest.approx(8 * 0.25, rel=1e-3) and far == pytest.approx(8 * 4.0, rel=1e-3)
    assert frechet_distance(a[:1], a) is None


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    assert abs(kernel_inception_distance(a, b)) < 0.05
    assert kernel_inception_distance(a, b + 1.0) > 0.5


def test_ms_ssim_uses_fewer_scales_on_small_images_and_is_one_for_identical_pairs():
    assert [ms_ssim_scales(s) for s in (32, 64, 128, 256, 1024)] == [2, 3, 4, 5, 5]
    images, _, _ = toy_real_data(per_class=4, size=64)
    assert ms_ssim(images[:3], images[:3]) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_ms_ssim(np.repeat(images[:1], 5, axis=0), 10, 0) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_ms_ssim(images, 20, 0) < 0.99


def test_nearest_distance_finds_the_exact_copy_and_the_copy_ratio_is_zero_only_for_copies():
    images, _, _ = toy_real_data(per_class=5, size=64)
    vectors = pixel_vectors(images)
    assert vectors.shape == (15, 32 * 32)
    distance, index = nearest_distances(vectors[[7, 2]], vectors)
    assert list(index) == [7, 2] and distance.max() < 1e-3
    _, index = nearest_distances(vectors[[7, 2]], vectors, exclude=np.array([7, 2]))
    assert 7 not in index and 2 not in index
    _, _, ratio = memorisation_ratios(vectors[[7]], vectors[8:])
    _, _, copy_ratio = memorisation_ratios(vectors[[9]], vectors[8:])
    assert copy_ratio[0] < 0.01 and ratio[0] > 0.5


def test_evaluate_command_prepares_the_real_data_and_prints_the_report(demo_root, tmp_path, capsys):
    from cli.main import main
    from core.labels import DEFAULT_CLASSES

    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    code = main(["evaluate", "--run", str(run), "--data", str(demo_root), "--n", "6", "--steps", "20", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == list(DEFAULT_CLASSES) and report["n_per_class"] == 6
    assert (run / "evaluation" / "report.json").is_file()
    assert main(["evaluate", "--run", str(run), "--data", str(demo_root), "--n", "6", "--steps", "20"]) == 0
    table = capsys.readouterr().out
    assert "cond acc" in table and "Pneumothorax" in table
