"""augment_bench.json names each plot once, under "plots", and every name is a file beside it (the old
single-plot alias "plot" had no reader left). The same small bench shows that each arm trains with only the
synthetic images that passed the recipe's screen, the rest of their class's top-up repeated real images."""
from __future__ import annotations

import json

import pytest

from core.evaluation.augment_bench import REPORT_NAME, AugmentBenchConfig, augment_bench
from tests.test_generate import TOY_CLASSES
from tests.toy_sources import ToySource, imbalanced_toy_data


def _png_names(value, where=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _png_names(item, where + (key,))
    elif isinstance(value, list):
        for item in value:
            yield from _png_names(item, where)
    elif isinstance(value, str) and value.endswith(".png"):
        yield where, value


@pytest.mark.slow
def test_the_bench_report_names_its_plots_once_and_they_exist_and_arms_use_only_images_that_passed(
        tmp_path, monkeypatch):
    import core.evaluation.augment_bench as bench

    real_draw = bench.draw

    def screened_draw(*args, **kwargs):          # as if the judge had passed only 2 images of the second class
        drawn = real_draw(*args, **kwargs)
        drawn.stats[TOY_CLASSES[1]]["passed"] = 2
        return drawn

    monkeypatch.setattr(bench, "draw", screened_draw)
    source = ToySource(tmp_path / "run", "oracle")
    augment_bench(AugmentBenchConfig(run=str(source.run_dir), seeds=2, classifier_steps=4, shares=[], pretrain=False,
                                     recipe="none"),
                  real=imbalanced_toy_data(train_counts=(20, 6, 8), test_per_class=10), generator=source)
    out = source.run_dir / "evaluation"
    report = json.loads((out / REPORT_NAME).read_text())
    named = list(_png_names(report))
    assert named and all(where[:1] == ("plots",) for where, _ in named), named
    assert sorted(name for _, name in named) == sorted(set(report["plots"].values()))
    assert all((out / name).is_file() for _, name in named)

    arm = report["arms"]["synthetic"]
    planned = arm["synthetic_planned"]
    assert planned == report["arms"]["duplicate_control"]["duplicates"] and planned[TOY_CLASSES[1]] > 2
    assert arm["synthetic"] == {**planned, TOY_CLASSES[1]: 2}
    assert arm["duplicates"] == {TOY_CLASSES[1]: planned[TOY_CLASSES[1]] - 2}
