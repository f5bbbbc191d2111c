"""augment-bench: paired real-only vs real+synthetic scores with their spread across seeds."""
from __future__ import annotations

import json

import pytest

from core.evaluation.augment_bench import AugmentBenchConfig, augment_bench
from core.evaluation.evaluate import RealData
from tests.test_generate import TOY_CLASSES, toy_real_data, write_toy_run

FAST = dict(seeds=2, steps=50)


@pytest.fixture(scope="module")
def real():
    images, labels, split = toy_real_data(per_class=20, size=32, seed=5)
    return RealData(images=images, labels=labels, split=split, classes=TOY_CLASSES, source="toy")


def test_a_generator_that_draws_the_wrong_class_makes_the_classifier_worse(tmp_path, real):
    run = write_toy_run(tmp_path / "run", "mislabels")
    report = augment_bench(AugmentBenchConfig(run=str(run), synthetic_per_class=40, seeds=1, steps=50), real=real)
    assert report["real"]["mean_accuracy"] > 0.9
    assert report["real_plus_synthetic"]["mean_accuracy"] < report["real"]["mean_accuracy"] - 0.2
    assert report["gain"]["mean_accuracy"]["mean"] < -0.2
    assert report["gain"]["mean_auc"]["mean"] < 0


def test_the_report_gives_per_class_scores_with_spread_over_seeds_and_is_saved(tmp_path, real):
    run = write_toy_run(tmp_path / "run", "follows")
    report = augment_bench(AugmentBenchConfig(run=str(run), **FAST), real=real)
    assert report["config"]["synthetic_per_class"] == 12  # 36 real training images over 3 classes
    for arm in ("real", "real_plus_synthetic"):
        assert set(report[arm]["per_class"]) == set(TOY_CLASSES)
        for scores in report[arm]["per_class"].values():
            assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["auc"] <= 1 and scores["accuracy_std"] >= 0
    assert len(report["gain"]["mean_accuracy"]["per_seed"]) == 2
    assert report["gain"]["mean_accuracy"]["mean"] > -0.1
    saved = json.loads((run / "evaluation" / "augment_bench.json").read_text())
    assert saved["gain"] == report["gain"] and (run / "evaluation" / "augment_bench.png").is_file()


def test_auc_is_one_for_a_perfect_ranking_and_a_half_for_ties():
    import numpy as np

    from core.evaluation.classifier import auc_one_vs_rest

    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert auc_one_vs_rest(perfect, labels, 2) == [1.0, 1.0]
    assert auc_one_vs_rest(np.full((4, 2), 0.5), labels, 2) == [0.5, 0.5]
    assert auc_one_vs_rest(perfect, np.zeros(4, int), 2) == [None, None]


def test_augment_bench_command_prints_the_table_and_the_gain(demo_root, tmp_path, capsys):
    from cli.main import main
    from core.labels import DEFAULT_CLASSES

    run = write_toy_run(tmp_path / "run", "follows", classes=list(DEFAULT_CLASSES))
    assert main(["augment-bench", "--run", str(run), "--data", str(demo_root), "--seeds", "1", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "acc real+syn" in out and "Pneumothorax" in out and "gain over 1 seed(s)" in out
