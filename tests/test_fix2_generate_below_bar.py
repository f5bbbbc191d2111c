"""The Generate tab says, in plain words, when the screening recipe topped a class up with images below
its bar: which class and how many (the CLI's generate command prints the same as a note)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.generate_panel import below_bar_note
from core.export.export import ExportResult
from tests.test_app_generate import trained_run  # noqa: F401 - the module's trained run fixture
from tests.test_generate_panel import panel  # noqa: F401 - the Generate tab with its warnings recorded


def _stats(wanted, passed):
    return {"wanted": wanted, "candidates": 10 * wanted, "passed": passed, "below_bar": wanted - passed}


def test_the_result_names_each_topped_up_class_and_how_many(panel, tmp_path):
    statuses = []
    panel.status.connect(statuses.append)
    screening = {"copy_threshold": 0.4, "per_class": {"Mass": _stats(10, 4), "Nodule": _stats(5, 5),
                                                      "Pneumothorax": _stats(1200, 0)}}
    panel._exported(ExportResult(out=tmp_path / "synthetic", images=1215, seconds=3.0, screening=screening))
    text = panel.eta.text()
    assert text.startswith("Exported 1,215 images to") and "No augmentation bench" in text
    assert "(Mass: 6 of 10, Pneumothorax: 1,200 of 1,200)" in text
    assert "Nodule" not in text                                     # every Nodule image passed
    assert "did not pass the quality screening" in text and "Look at them before relying on them" in text
    assert ".." not in text and "--" not in text                    # sentences, no CLI flags
    assert statuses == [text] and panel.eta.toolTip() == text


@pytest.mark.parametrize("screening", [{}, {"copy_threshold": 0.4, "per_class": {"Mass": _stats(10, 10)}}])
def test_nothing_is_said_when_every_image_passed_or_nothing_was_screened(panel, tmp_path, screening):
    assert below_bar_note(screening) == ""
    panel._exported(ExportResult(out=tmp_path / "synthetic", images=10, seconds=1.0, screening=screening))
    assert "screening" not in panel.eta.text()


@pytest.mark.slow
def test_a_recommended_export_that_tops_up_shows_it_in_the_generate_tab(panel, trained_run, tmp_path, qtbot,
                                                                        monkeypatch):
    """The whole path: the recipe's screening -> ExportResult -> the tab's result line, checked against the
    manifest. The bar is raised out of reach (no probability exceeds 1) so that every class is topped up
    whatever the tiny run draws; the judge is made small (30 steps) and the export runs in this process."""
    from functools import partial

    from app import workers
    from core.evaluation import classifier, recipe

    monkeypatch.setitem(recipe.RECIPES, "recommended",
                        recipe.Recipe("recommended", min_confidence=1.01, reject_copies=True))
    monkeypatch.setattr(classifier, "ClassifierConfig", partial(classifier.ClassifierConfig, steps=30))
    monkeypatch.setattr("app.generate_panel.start_job",
                        lambda task, config, **kw: workers.start_job(task, config, in_process=False, **kw))
    panel.run_edit.setText(str(trained_run))
    panel.load_run()
    panel.counts_by_hand.setChecked(True)
    for row in range(panel.counts.rowCount()):
        panel.counts.cellWidget(row, 1).setValue(3 if row < 2 else 0)
    assert panel.recipe.currentText() == "recommended"
    panel.out_edit.setText(str(tmp_path / "synthetic"))
    panel.export()
    qtbot.waitUntil(lambda: panel.runner is None and "Exported" in panel.eta.text() or bool(panel.failures),
                    timeout=300_000)
    assert not panel.failures
    manifest = json.loads((Path(tmp_path) / "synthetic" / "manifest.json").read_text())
    below = {name: stats for name, stats in manifest["screening"]["per_class"].items() if stats["below_bar"]}
    assert len(below) == 2
    for name, stats in below.items():
        assert f"{name}: {stats['below_bar']} of {stats['wanted']}" in panel.eta.text()
    assert "did not pass the quality screening" in panel.eta.text()
