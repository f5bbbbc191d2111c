"""report.html: one self-contained file, verdict first, every plot embedded, text from files escaped."""
from __future__ import annotations

import json
import re

import numpy as np

from core.evaluation.plots import bars_figure, confusion_figure, png_bytes
from core.evaluation.report import build_report, write_report
from core.evaluation.verdict import verdict_for


def _bench(classes):
    stat = {"mean": 0.8, "std": 0.01, "per_seed": [0.79, 0.8, 0.81]}
    gain = {"mean": 0.03, "se": 0.005, "per_seed": [0.025, 0.03, 0.035]}
    arm = {"description": "real + x", "pretrain": False, "synthetic": {classes[1]: 5}, "duplicates": {},
           "balanced_accuracy": stat, "macro_auc": stat, "rare_recall": stat,
           "per_class": {c: {"recall": stat, "auc": stat} for c in classes},
           "gain_vs_control": {k: gain for k in ("balanced_accuracy", "macro_auc", "rare_recall")},
           "gain_vs_real": {k: gain for k in ("balanced_accuracy", "macro_auc", "rare_recall")}}
    verdict = verdict_for({"synthetic": arm["gain_vs_control"]}, seeds=3)
    return {"run": "RUN", "data": "<data>", "classes": classes, "config": {"seeds": 3, "classifier_steps": 10},
            "recipe": {"name": "none", "truncation": 1.0, "min_confidence": 0.0, "reject_copies": False},
            "train_counts": {c: 10 for c in classes}, "test_counts": {c: 10 for c in classes}, "test_images": 20,
            "arms": {"real": arm, "duplicate_control": arm, "synthetic": arm}, "verdict": verdict,
            "recommended": {"arm": "synthetic", "counts": {c: 5 for c in classes}, "pretrain": False,
                            "advice": "Add them <now>."},
            "plots": {"bench_gain": "bench_gain.png"}}


def test_the_report_puts_the_verdict_first_embeds_its_plots_and_escapes_names(tmp_path):
    classes = ["No Finding", "<script>alert(1)</script>"]
    run = tmp_path / "run"
    folder = run / "evaluation"
    folder.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"steps": 300, "classes": classes, "arch": "sngan"}))
    (folder / "augment_bench.json").write_text(json.dumps(_bench(classes)))
    (folder / "bench_gain.png").write_bytes(png_bytes(bars_figure("t", classes, [("a", [0.5, 0.7])], "y")))
    path = write_report(folder, run)
    html = path.read_text(encoding="utf-8")
    assert html.index('class="verdict helps"') < html.index("<table")
    assert "Synthetic images help" in html and "Add them &lt;now&gt;." in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("data:image/png;base64,") == 1 and not re.search(r'src="(?!data:)', html)
    assert "tensorflow" in html and "&quot;sngan&quot;" in html or "sngan" in html


def test_without_any_bench_the_report_says_so(tmp_path):
    html = build_report(tmp_path)
    assert 'class="verdict not_run"' in html and "not tested yet" in html


def test_the_confusion_matrix_is_labelled_with_class_names_not_numbers():
    figure = confusion_figure(np.array([[5, 1], [0, 6]]), ["No Finding", "Mass"])
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["No Finding", "Mass"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["No Finding", "Mass"]
    assert png_bytes(figure)[:8] == b"\x89PNG\r\n\x1a\n"


def test_legends_sit_above_the_bars_where_no_whisker_can_cover_them():
    figure = bars_figure("t", ["a", "b"], [("one", [0.9, 1.0]), ("two", [1.0, 0.95])], "y",
                         errors=[[0.1, 0.1], [0.1, 0.1]])
    png_bytes(figure)  # lays the figure out
    ax = figure.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.y0 >= ax.get_window_extent().y1 - 1
