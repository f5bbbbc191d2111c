"""The bench plots keep their title, legend and axis labels inside the picture, however few arms or
classes there are (a 3-arm gain plot used to lose both ends of its title)."""
from __future__ import annotations

import pytest

from core.evaluation.plots import _arm_bars, _gain_figure, bars_figure

ARMS = ["real", "duplicate_control", "synthetic", "synthetic_x0.25", "synthetic_x2", "pretrain"]
STAT = {"mean": 0.6, "std": 0.02}


def _outside(figure) -> list[str]:
    """The texts and legends that reach past the figure's edges once drawn (laid out as `png_bytes` saves it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = figure.bbox
    ax = figure.axes[0]
    parts = {"title": ax.title, "y label": ax.yaxis.label, "x ticks": None}
    if ax.get_legend() is not None:
        parts["legend"] = ax.get_legend()
    out = []
    for name, artist in parts.items():
        extents = ([label.get_window_extent(renderer) for label in ax.get_xticklabels()] if artist is None
                   else [artist.get_window_extent(renderer)])
        if any(e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1 for e in extents):
            out.append(name)
    return out


@pytest.mark.parametrize("arms", [3, 4, 6])
def test_the_gain_plot_shows_its_whole_title_and_y_label(arms):
    figure = _gain_figure(ARMS[:arms], [{"mean": 0.01 * i - 0.02, "se": 0.01} for i in range(arms)])
    assert _outside(figure) == []


@pytest.mark.parametrize("arms", [3, 6])
def test_the_arm_plot_fits(arms):
    assert _outside(_arm_bars(ARMS[:arms], [STAT] * arms, [STAT] * arms)) == []


def test_a_bar_plot_of_two_classes_and_three_arms_fits_its_title_and_legend():
    figure = bars_figure("Recall per class on held-out real images (mean, whiskers: std over seeds)",
                         ["Mass", "Nodule"], [(a, [0.5, 0.4]) for a in ARMS[:3]], "recall")
    assert _outside(figure) == []
