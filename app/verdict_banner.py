"""The verdict of a run's augmentation bench as a coloured banner: what was found and what to do.

Shown first on the Evaluate tab and above Export on the Generate tab. The words come from core
(`core.evaluation.verdict`: the label and the sentence with the numbers); this module adds the colour
and one sentence of what to do next, in the words of someone who trains classifiers, not GANs.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from core.evaluation.verdict import VERDICTS, verdict_text

COLOURS = {  # background, left border, text: readable on the dark theme
    "helps": ("#1f3a26", "#4c9a5a", "#e3f3e6"),
    "no_better": ("#3a3320", "#c9a227", "#f6efd9"),
    "hurts": ("#3f2123", "#c24b4b", "#f7e4e4"),
    "not_run": ("#2a3039", "#8c8c8c", "#dde3ea"),
}
TITLES = {"helps": "Synthetic images help", "no_better": "No better than repeating your real images",
          "hurts": "Synthetic images hurt", "not_run": "Not tested yet"}
WHAT_TO_DO = {
    "helps": "Export with the recommended counts and recipe (Generate tab) and train your classifier as the "
             "report advises.",
    "no_better": "Balance your classes by repeating real images of the rare findings instead; train the "
                 "generator longer or run the bench with more seeds before relying on synthetic images.",
    "hurts": "Do not add these images to your training data: train the generator longer (a better preset), "
             "then run the augmentation bench again.",
    "not_run": "Run the augmentation bench{where} to find out whether these images help a classifier more than "
               "repeating your real images.",
}


def verdict_key(verdict: dict | None) -> str:
    key = (verdict or {}).get("verdict", "not_run")
    return key if key in VERDICTS else "not_run"


class VerdictBanner(QLabel):
    """`show_verdict(verdict)` with a verdict dict from core (`latest_verdict(run)` or a report's)."""

    def __init__(self, parent=None, bench_is_elsewhere: bool = False):
        super().__init__(parent)
        self._where = " (Evaluate tab)" if bench_is_elsewhere else ""
        self.setWordWrap(True)
        self.setTextFormat(Qt.RichText)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.key = "not_run"
        self.show_verdict(None)

    def show_verdict(self, verdict: dict | None) -> None:
        self.key = verdict_key(verdict)
        background, border, text = COLOURS[self.key]
        self.setStyleSheet(f"QLabel {{ background: {background}; color: {text}; border-left: 6px solid {border}; "
                           f"border-radius: 4px; padding: 8px 12px; }}")
        detail = html.escape(verdict_text(verdict)) if self.key != "not_run" else ""
        when = (verdict or {}).get("created")
        self.setText(f"<b style='font-size:11pt'>{TITLES[self.key]}.</b> {self.what_to_do()}"
                     + (f"<br><span style='font-size:8pt'>{detail}"
                        + (f" (augmentation bench of {html.escape(str(when))})" if when else "") + "</span>" if detail else ""))
        self.setToolTip("The augmentation bench trains the same classifier on your real images with the rare "
                        "findings topped up (a) by repeating real images and (b) by synthetic images, over several "
                        "seeds, and compares them on held-out real images. 'Helps' means the synthetic images "
                        "beat repeating by more than two standard errors.")

    def what_to_do(self) -> str:
        return WHAT_TO_DO[self.key].format(where=self._where)

    def plain_text(self) -> str:
        """The banner's words without markup (tests, the status bar)."""
        from PySide6.QtGui import QTextDocument

        document = QTextDocument()
        document.setHtml(self.text())
        return document.toPlainText()
