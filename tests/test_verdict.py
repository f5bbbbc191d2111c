"""The verdict on fixed numbers: helps only beyond 2 standard errors above the duplicate control."""
from __future__ import annotations

import json

import pytest

from core.evaluation.verdict import decide, latest_verdict, verdict_for, verdict_text


def _gain(mean, se, per_seed=()):
    return {"balanced_accuracy": {"mean": mean, "se": se, "per_seed": list(per_seed)}}


@pytest.mark.parametrize("gain, se, expected", [
    (0.030, 0.010, "helps"),        # 3 SE above 0
    (0.019, 0.010, "no_better"),    # 1.9 SE: not enough
    (0.000, 0.010, "no_better"),
    (-0.019, 0.010, "no_better"),
    (-0.030, 0.010, "hurts"),
    (0.010, 0.0, "helps"),          # every seed gained the same
])
def test_the_verdict_follows_two_standard_errors(gain, se, expected):
    assert decide(gain, se, seeds=3) == expected


def test_one_seed_gives_no_verdict_either_way():
    assert decide(0.5, None, seeds=1) == "no_better"
    assert "no spread" in verdict_text(verdict_for({"synthetic": _gain(0.5, None)}, seeds=1))


def test_the_best_arm_decides_and_is_named_with_its_numbers():
    gains = {"synthetic": _gain(-0.05, 0.01), "pretrain": _gain(0.04, 0.01, [0.03, 0.05, 0.04]),
             "synthetic_x0.5": _gain(0.01, 0.01)}
    verdict = verdict_for(gains, seeds=3)
    assert verdict["verdict"] == "helps" and verdict["best_arm"] == "pretrain"
    assert verdict["gain"] == 0.04 and verdict["se"] == 0.01 and verdict["per_seed"] == [0.03, 0.05, 0.04]
    text = verdict_text(verdict)
    assert text.startswith("Synthetic images help:")
    assert "pretrain" in text and "+0.040" in text and "0.010" in text


def test_when_every_arm_loses_the_verdict_is_hurts():
    verdict = verdict_for({"synthetic": _gain(-0.2, 0.02), "pretrain": _gain(-0.1, 0.02)}, seeds=3)
    assert verdict["verdict"] == "hurts" and verdict["best_arm"] == "pretrain"
    assert verdict_text(verdict).startswith("Synthetic images hurt: even the best use (pretrain)")


def test_a_run_without_a_bench_reads_as_not_run(tmp_path):
    assert latest_verdict(tmp_path)["verdict"] == "not_run"
    assert "not tested" in verdict_text(latest_verdict(tmp_path))
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "augment_bench.json").write_text("{broken")
    assert latest_verdict(tmp_path)["verdict"] == "not_run"


def test_the_latest_bench_verdict_is_read_with_its_recommendation(tmp_path):
    verdict = verdict_for({"synthetic": _gain(-0.2, 0.02)}, seeds=3)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "augment_bench.json").write_text(json.dumps(
        {"verdict": verdict, "created": "2026-11-26T00:00:00+00:00", "recommended": {"counts": {"Mass": 5}}}))
    read = latest_verdict(tmp_path)
    assert read["verdict"] == "hurts" and read["recommended"]["counts"] == {"Mass": 5}
