"""augment_bench.json names each plot once, under "plots", and every name is a file beside it (the old
single-plot alias "plot" had no reader left)."""
from __future__ import annotations

import json

import pytest

from core.evaluation.augment_bench import REPORT_NAME, AugmentBenchConfig, augment_bench
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
def test_the_bench_report_names_its_plots_once_and_they_exist(tmp_path):
    source = ToySource(tmp_path / "run", "oracle")
    augment_bench(AugmentBenchConfig(run=str(source.run_dir), seeds=2, classifier_steps=4, shares=[], pretrain=False,
                                     recipe="none"),
                  real=imbalanced_toy_data(train_counts=(20, 6, 6), test_per_class=10), generator=source)
    out = source.run_dir / "evaluation"
    report = json.loads((out / REPORT_NAME).read_text())
    named = list(_png_names(report))
    assert named and all(where[:1] == ("plots",) for where, _ in named), named
    assert sorted(name for _, name in named) == sorted(set(report["plots"].values()))
    assert all((out / name).is_file() for _, name in named)
