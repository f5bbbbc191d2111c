"""The live-quality summary gives no verdict when the judge itself has not learned the classes: a judge
near chance on real images cannot say whether samples show their class."""
from __future__ import annotations

import pytest

from app.quality_plot import QualityPlot, judge_is_trusted, summary_text

SEVEN = ["Atelectasis", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax", "No Finding"]


def _event(share: float, judge: float | None, classes=SEVEN) -> dict:
    return {"step": 300, "per_class": {name: share for name in classes}, "overall": share,
            "chance": round(1 / len(classes), 4), "judge_accuracy": judge}


@pytest.mark.parametrize("judge", [0.10, 0.0, 0.2, 0.45])
def test_a_judge_near_or_below_chance_gets_no_verdict_but_a_plain_warning(judge):
    """Seen: a 30-step judge at 10% on real images, and samples it 'recognised' as well as real ones."""
    text = summary_text(_event(0.125, judge))
    assert "judge has not learned the classes yet" in text and "cannot be trusted" in text
    assert f"only {judge * 100:.0f}% of real images" in text and "chance: 14%" in text
    assert "good enough" not in text and "Near chance: the model" not in text


def test_a_judge_that_learned_the_classes_still_gives_the_verdicts():
    assert "good enough to evaluate" in summary_text(_event(0.86, 0.95))
    assert "Near chance: the model has not learned" in summary_text(_event(0.125, 0.95))
    middle = summary_text(_event(0.5, 0.95))
    assert "The judge recognises 95% of real images." in middle and "cannot be trusted" not in middle
    assert summary_text(_event(0.5, None)).endswith("Effusion 50%).")      # no judge number: no judge sentence


def test_the_bar_is_half_right_and_well_above_chance():
    assert not judge_is_trusted(0.49, 1 / 7) and judge_is_trusted(0.5, 1 / 7)
    assert not judge_is_trusted(0.7, 0.5) and judge_is_trusted(0.8, 0.5)    # two classes: 70% is near chance
    assert "cannot be trusted" in summary_text(_event(0.9, 0.7, classes=["Mass", "Nodule"]))


def test_the_plot_shows_the_warning_under_the_curve(qtbot):
    plot = QualityPlot()
    qtbot.addWidget(plot)
    plot.add(_event(0.9, 0.1))
    plot.redraw()
    assert "judge has not learned the classes yet" in plot.summary.text()
    assert "good enough" not in plot.summary.text()
