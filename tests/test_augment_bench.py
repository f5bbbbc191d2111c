"""augment-bench: a paired experiment against a count-matched duplicate control, with a verdict.

The slow tests use stand-in generators whose worth is known (tests/toy_sources.py): an oracle that
draws fresh real-like images of the right class, and one that draws random classes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.augment_bench import (AugmentBenchConfig, augment_bench, paired_gain, plan_arms, rarest,
                                           repeats, report_table, screened_arm)
from tests.toy_sources import ToySource, imbalanced_toy_data


# two seeds: the fewest that give a standard error, hence a verdict
FAST = dict(seeds=2, classifier_steps=40, shares=[], pretrain=False, recipe="none")


def test_the_duplicate_control_adds_exactly_what_the_synthetic_arm_adds():
    counts = np.array([60, 10, 25])
    arms = {arm.name: arm for arm in plan_arms(counts, shares=[0.25, 2.0], pretrain=True)}
    assert arms["real"].synthetic == {} and arms["real"].duplicates == {}
    assert arms["duplicate_control"].duplicates == arms["synthetic"].synthetic == {0: 0, 1: 50, 2: 35}
    quarter = arms["synthetic_x0.25"]
    assert {c: quarter.synthetic[c] + quarter.duplicates[c] for c in range(3)} == {0: 0, 1: 50, 2: 35}
    assert quarter.synthetic == {0: 0, 1: 12, 2: 9}
    assert arms["synthetic_x2"].synthetic == {0: 0, 1: 100, 2: 70} and not any(arms["synthetic_x2"].duplicates.values())
    assert arms["pretrain"].pretrain and arms["pretrain"].synthetic == {0: 60, 1: 60, 2: 60}
    assert arms["pretrain"].duplicates == arms["duplicate_control"].duplicates


def test_synthetic_images_that_failed_the_screen_are_replaced_by_repeats_so_every_arm_stays_count_matched():
    counts = np.array([60, 10, 25])
    arms = {arm.name: arm for arm in plan_arms(counts, shares=[0.5], pretrain=True)}
    passed = {0: 60, 1: 50, 2: 5}                       # class 2: the judge read only 5 as their class
    full = screened_arm(arms["synthetic"], passed)
    assert full.synthetic == {0: 0, 1: 50, 2: 5} and full.duplicates == {0: 0, 1: 0, 2: 30}
    half = screened_arm(arms["synthetic_x0.5"], passed)
    assert arms["synthetic_x0.5"].synthetic == {0: 0, 1: 25, 2: 18}
    assert half.synthetic == {0: 0, 1: 25, 2: 5} and half.duplicates == {0: 0, 1: 25, 2: 30}
    control = arms["duplicate_control"].duplicates
    for arm in (full, half):
        assert {c: arm.synthetic[c] + arm.duplicates[c] for c in range(3)} == control
    pretrain = screened_arm(arms["pretrain"], passed)
    assert pretrain.synthetic == {0: 60, 1: 50, 2: 5} and pretrain.duplicates == control
    assert screened_arm(arms["synthetic"], {0: 60, 1: 60, 2: 60}) == arms["synthetic"]   # all passed: as planned


def test_repeats_cycle_through_a_class_so_every_image_is_repeated_evenly():
    labels = np.array([0] * 5 + [1] * 3)
    chosen = repeats(labels, {0: 0, 1: 7}, seed=0)
    assert len(chosen) == 7 and set(labels[chosen]) == {1}
    assert sorted(np.bincount(chosen, minlength=8)[5:]) == [2, 2, 3]
    assert list(chosen) == list(repeats(labels, {0: 0, 1: 7}, seed=0))


def test_the_gain_is_a_paired_difference_with_its_standard_error():
    arm = [{"balanced_accuracy": v} for v in (0.80, 0.85, 0.90)]
    control = [{"balanced_accuracy": v} for v in (0.78, 0.82, 0.86)]
    gain = paired_gain(arm, control, "balanced_accuracy")
    assert gain["per_seed"] == [0.02, 0.03, 0.04]
    assert gain["mean"] == pytest.approx(0.03) and gain["se"] == pytest.approx(0.01 / np.sqrt(3), abs=1e-4)
    assert paired_gain(arm[:1], control[:1], "balanced_accuracy")["se"] is None


def test_the_rarest_classes_are_those_with_fewest_training_images():
    assert rarest(["a", "b", "c", "d"], np.array([50, 10, 30, 10]), 3) == ["b", "d", "c"]


@pytest.fixture(scope="module")
def real():
    return imbalanced_toy_data(train_counts=(60, 10, 10), test_per_class=12)


@pytest.fixture(scope="module")
def random_labels_report(tmp_path_factory, real):
    source = ToySource(tmp_path_factory.mktemp("random") / "run", "random_labels")
    return augment_bench(AugmentBenchConfig(run=str(source.run_dir), **FAST), real=real, generator=source)


@pytest.fixture(scope="module")
def oracle_report(tmp_path_factory, real):
    source = ToySource(tmp_path_factory.mktemp("oracle") / "run", "oracle")
    return augment_bench(AugmentBenchConfig(run=str(source.run_dir), **FAST), real=real, generator=source)


@pytest.mark.slow
def test_images_with_random_labels_are_judged_to_hurt(random_labels_report):
    assert random_labels_report["verdict"]["verdict"] == "hurts"
    assert random_labels_report["arms"]["synthetic"]["gain_vs_control"]["balanced_accuracy"]["mean"] < -0.1


@pytest.mark.slow
def test_an_oracle_is_at_least_as_good_as_repeating_and_beats_random_labels(oracle_report, random_labels_report):
    assert oracle_report["verdict"]["verdict"] in ("helps", "no_better")
    oracle, random = oracle_report["arms"]["synthetic"], random_labels_report["arms"]["synthetic"]
    assert oracle["balanced_accuracy"]["mean"] > random["balanced_accuracy"]["mean"] + 0.1
    assert all(o > r for o, r in zip(oracle["balanced_accuracy"]["per_seed"], random["balanced_accuracy"]["per_seed"]))
    # the same seeds and real images: the real and control arms do not depend on the source
    assert oracle_report["arms"]["duplicate_control"] == random_labels_report["arms"]["duplicate_control"]


@pytest.mark.slow
def test_balancing_is_what_real_only_training_lacks(oracle_report):
    arms = oracle_report["arms"]
    assert arms["real"]["rare_recall"]["mean"] < arms["duplicate_control"]["rare_recall"]["mean"]
    assert oracle_report["rarest_classes"] == ["Effusion", "Mass", "No Finding"]


@pytest.mark.slow
def test_the_report_holds_the_verdict_every_arm_and_the_advice_and_is_saved(random_labels_report):
    report = random_labels_report
    out = report["run"] + "/evaluation"
    saved = json.loads(open(out + "/augment_bench.json", encoding="utf-8").read())
    assert saved["verdict"] == report["verdict"] and set(saved["arms"]) == {"real", "duplicate_control", "synthetic"}
    assert report["train_counts"] == {"No Finding": 60, "Mass": 10, "Effusion": 10}
    assert report["test_counts"] == {"No Finding": 12, "Mass": 12, "Effusion": 12}
    assert report["recommended"]["counts"] == {"No Finding": 0, "Mass": 50, "Effusion": 50}
    assert report["recommended"]["advice"].startswith("Synthetic images did not beat repeating")
    for arm in saved["arms"].values():
        assert len(arm["balanced_accuracy"]["per_seed"]) == 2 and arm["balanced_accuracy"]["std"] is not None
        assert set(arm["per_class"]) == {"No Finding", "Mass", "Effusion"}
    html = open(out + "/report.html", encoding="utf-8").read()
    assert "Synthetic images hurt" in html and "data:image/png;base64," in html
    header, rows = report_table(report)
    assert header == ["class", "real", "duplicate_control", "synthetic"]
    assert rows[3][0] == "balanced accuracy" and " +- " in rows[3][1]


def test_a_test_split_with_too_few_images_of_a_class_is_refused_before_anything_is_written(tmp_path):
    real = imbalanced_toy_data(train_counts=(20, 10, 10), test_per_class=6)
    source = ToySource(tmp_path / "run")
    with pytest.raises(UserError, match="fewer than 10 images of No Finding 6, Mass 6, Effusion 6"):
        augment_bench(AugmentBenchConfig(run=str(source.run_dir), **FAST), real=real, generator=source)
    assert not (tmp_path / "run" / "evaluation").exists()


def test_options_that_cannot_work_are_named(tmp_path):
    for bad, name in ((dict(seeds=0), "--seeds"), (dict(shares=["x"]), "--shares"), (dict(recipe="best"), "--recipe"),
                      (dict(run=""), "--run")):
        with pytest.raises(UserError, match=name):
            AugmentBenchConfig(**{"run": str(tmp_path), **bad}).checked()


def test_augment_bench_command_prints_the_table_and_the_verdict(tmp_path, capsys):
    from cli.main import main
    from tests.test_generate import write_toy_run
    from tests.toy_sources import write_toy_cache

    run = write_toy_run(tmp_path / "run", "follows")
    cache = write_toy_cache(tmp_path / "cache", imbalanced_toy_data(train_counts=(30, 10, 10), test_per_class=10))
    code = main(["augment-bench", "--run", str(run), "--data", str(cache), "--seeds", "1", "--classifier-steps", "3",
                 "--shares", "", "--no-pretrain", "--recipe", "none"])
    assert code == 0
    out = capsys.readouterr().out
    assert "duplicate_control" in out and "balanced accuracy" in out
    assert "verdict: Synthetic images are no better than repeating your real images" in out and "no spread" in out
    assert (run / "evaluation" / "report.html").is_file()


def board_tags(run_dir) -> dict:
    """Scalar tag -> value and text tags in RUN/tensorboard, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    board.Reload()
    import tensorflow as tf

    return {tag: tf.make_ndarray(board.Tensors(tag)[-1].tensor_proto) for tag in board.Tags()["tensors"]}


@pytest.mark.slow
def test_the_bench_results_and_verdict_go_to_the_runs_tensorboard(random_labels_report):
    from pathlib import Path

    tags = board_tags(Path(random_labels_report["run"]))
    gain = random_labels_report["arms"]["synthetic"]["gain_vs_control"]["balanced_accuracy"]["mean"]
    assert float(tags["evaluation/bench_gain_vs_control/synthetic"]) == pytest.approx(gain, abs=1e-6)
    assert float(tags["evaluation/bench_balanced_accuracy/real"]) == pytest.approx(
        random_labels_report["arms"]["real"]["balanced_accuracy"]["mean"], abs=1e-6)
    assert b"Synthetic images hurt" in tags["evaluation/augment_bench_verdict"].item()

