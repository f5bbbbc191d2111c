"""The Train tab's live quality view: per class, the share of its sample-grid row the judge puts in that class.

Fed by the training job's "quality" events (`core.evaluation.live_quality`). One line per class over the
steps, the judge's accuracy on real held-out images as a dashed ceiling (a perfect generator reaches it)
and chance as a dotted floor; the colour key wraps under the plot, never over the curves. A line of text under the plot
says where the model stands in words. Redrawn from a 10 Hz timer, like the loss plots.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

CLASS_COLOURS = ("#4cc9f0", "#f4a259", "#8ac926", "#ff6b6b", "#c77dff", "#ffd166", "#06d6a0", "#adb5bd",
                 "#f15bb5", "#00bbf9", "#fee440", "#9b5de5", "#00f5d4", "#fb5607")
EMPTY_HINT = ("Per-class quality appears here during training: a judge trained on your real images "
              "checks every sample grid (its first training takes one to three minutes).")
GOOD_ENOUGH = 0.9   # of the judge's own accuracy on real images
NEAR_CHANCE = 1.5   # a share at most this many times chance is "near chance"
JUDGE_MIN = 0.5     # a judge below this on real images is not trusted to grade samples


class QualityPlot(QWidget):
    """`add(event)` stores a quality event; the timer redraws when something changed."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.events: list[dict] = []
        self._dirty = False
        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "samples showing their class")
        self.plot.setYRange(0, 1.05)
        self.plot.setToolTip("For each class: the share of its row in the sample grid that a judge classifier, "
                             "trained on your real images, recognises as that class. Dashed: the judge's accuracy "
                             "on real images it did not train on (the best a generator can score). Dotted: chance.")
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.ceiling = pg.InfiniteLine(angle=0, pen=pg.mkPen("#dde3ea", width=1, style=Qt.DashLine))
        self.floor = pg.InfiniteLine(angle=0, pen=pg.mkPen("#7b8794", width=1, style=Qt.DotLine))
        for line in (self.ceiling, self.floor):
            line.setVisible(False)
            self.plot.addItem(line)
        self.key = QLabel("", wordWrap=True)     # the colour key wraps below the plot, never over the curves
        self.summary = QLabel(EMPTY_HINT, wordWrap=True)
        self.summary.setObjectName("hint")
        self.plot.setTitle("Class fidelity (judge)")
        self._set_key([])
        self.timer = QTimer(self, interval=100)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.key)
        layout.addWidget(self.summary)

    def _set_key(self, classes: list[str]) -> None:
        entries = [f"<span style='color:{CLASS_COLOURS[i % len(CLASS_COLOURS)]}'>&#9644;&nbsp;{name}</span>"
                   for i, name in enumerate(classes)]
        if entries:
            entries.append("<span style='color:#dde3ea'>- - judge on real images</span>")
            entries.append("<span style='color:#7b8794'>&middot;&middot;&middot; chance</span>")
        self.key.setText(" &nbsp; ".join(entries))
        self.key.setVisible(bool(entries))

    def clear(self) -> None:
        self.events = []
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        self._set_key([])
        self.ceiling.setVisible(False)
        self.floor.setVisible(False)
        self.summary.setText(EMPTY_HINT)

    def add(self, event: dict) -> None:
        self.events.append(event)
        self._dirty = True

    def points(self, name: str) -> int:
        curve = self.curves.get(name)
        x = None if curve is None else curve.getData()[0]
        return 0 if x is None else len(x)

    def redraw(self) -> None:
        if not self._dirty or not self.events:
            return
        self._dirty = False
        events = sorted(self.events, key=lambda e: e["step"])
        classes = list(events[-1]["per_class"])
        if list(self.curves) != classes:
            for curve in self.curves.values():
                self.plot.removeItem(curve)
            self.curves = {name: self.plot.plot([], [], pen=pg.mkPen(CLASS_COLOURS[i % len(CLASS_COLOURS)], width=2))
                           for i, name in enumerate(classes)}
            self._set_key(classes)
        steps = np.array([e["step"] for e in events], dtype=float)
        for name, curve in self.curves.items():
            values = np.array([e["per_class"].get(name, np.nan) for e in events], dtype=float)
            keep = np.isfinite(values)
            curve.setData(steps[keep], values[keep])
        last = events[-1]
        if last.get("judge_accuracy") is not None:
            self.ceiling.setPos(last["judge_accuracy"])
            self.ceiling.setVisible(True)
        self.floor.setPos(last["chance"])
        self.floor.setVisible(True)
        self.summary.setText(summary_text(last))


def summary_text(event: dict) -> str:
    """Where the model stands, in words, from the latest quality event."""
    judge = event.get("judge_accuracy")
    weakest = sorted(event["per_class"].items(), key=lambda item: item[1])[:2]
    text = (f"Step {event['step']:,}: {event['overall'] * 100:.0f}% of the samples show their class "
            f"(weakest: {', '.join(f'{name} {share * 100:.0f}%' for name, share in weakest)}).")
    if judge is None:
        return text
    if not judge_is_trusted(judge, event["chance"]):
        return text + (f" But the judge that counts them recognises only {judge * 100:.0f}% of real images "
                       f"(chance: {event['chance'] * 100:.0f}%): the judge has not learned the classes yet, so this "
                       "curve cannot be trusted either way.")
    text += f" The judge recognises {judge * 100:.0f}% of real images."
    if event["overall"] >= GOOD_ENOUGH * judge:
        text += " The classes are as recognisable as in real images: good enough to evaluate."
    elif event["overall"] <= NEAR_CHANCE * event["chance"]:
        text += " Near chance: the model has not learned the classes yet."
    return text


def judge_is_trusted(judge: float, chance: float) -> bool:
    """Whether the judge's accuracy on held-out real images is far enough above chance for its verdicts on
    samples to mean something: at least `JUDGE_MIN` and more than `NEAR_CHANCE` times chance."""
    return judge >= JUDGE_MIN and judge > NEAR_CHANCE * chance
