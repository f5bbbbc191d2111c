"""Dark theme: Fusion style, a dark palette (X-rays read better on dark), and resources/style.qss."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
STYLE_SHEET = RESOURCES / "style.qss"
COLOURS = {
    QPalette.Window: "#1f242b", QPalette.WindowText: "#dde3ea", QPalette.Base: "#161a1f",
    QPalette.AlternateBase: "#1c2127", QPalette.ToolTipBase: "#2b323b", QPalette.ToolTipText: "#e8edf2",
    QPalette.Text: "#dde3ea", QPalette.Button: "#2a3039", QPalette.ButtonText: "#dde3ea",
    QPalette.BrightText: "#ff6b6b", QPalette.Highlight: "#2f6fb0", QPalette.HighlightedText: "#ffffff",
    QPalette.Link: "#6fb3ff", QPalette.PlaceholderText: "#7b8794",
}

LABEL_COLOURS = {   # one colour per finding, for boxes in the viewer and the thumbnails
    "Atelectasis": "#f4a259", "Cardiomegaly": "#e15554", "Consolidation": "#c77dff", "Edema": "#4cc9f0",
    "Effusion": "#3bb273", "Emphysema": "#a3b18a", "Fibrosis": "#e9c46a", "Hernia": "#ff99c8",
    "Infiltration": "#7768ae", "Mass": "#ff595e", "Nodule": "#ffca3a", "Pleural_Thickening": "#8ac926",
    "Pneumonia": "#1982c4", "Pneumothorax": "#6a4c93",
}


def colour_of(label: str) -> str:
    return LABEL_COLOURS.get(label, "#ffffff")


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    for role, colour in COLOURS.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.Text, QPalette.WindowText, QPalette.ButtonText):
        palette.setColor(QPalette.Disabled, role, QColor("#69737f"))
    app.setPalette(palette)
    if STYLE_SHEET.exists():
        icons = (RESOURCES / "icons").as_posix()  # style sheets resolve url() against the working folder
        app.setStyleSheet(STYLE_SHEET.read_text(encoding="utf-8").replace("@ICONS@", icons))
