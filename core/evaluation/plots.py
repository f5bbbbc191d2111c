"""Plots of the evaluation and the augmentation bench, drawn with matplotlib (Agg, files only).

Every figure is a `matplotlib.figure.Figure` made without pyplot (no global state, no window), in one
theme (`THEME`), with class names on the axes and legends placed above the axes so that no bar or
whisker covers them. `save_figures` writes them as PNG files atomically; the HTML report embeds them.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

THEME = {
    "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold", "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "axes.axisbelow": True,
    "grid.color": "#dddddd", "grid.linewidth": 0.6, "figure.facecolor": "white", "axes.facecolor": "white",
    "savefig.dpi": 110, "legend.frameon": False,
}
COLOURS = ("#3b6ea8", "#e08a2c", "#4c9a5a", "#c24b4b", "#8a6bb8", "#6b6b6b", "#c9a227", "#2aa0a8")
MIN_WIDTH = 4.6  # inches: a bar chart of few bars still fits its legend; titles wrap to the width (wrap=True)
ARM_COLOURS = {"real": "#8c8c8c", "duplicate_control": "#3b6ea8"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with matplotlib.rc_context(THEME):
        figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _themed(draw: Callable):
    """Run a drawing function under the theme (rc settings apply while artists are created)."""
    import matplotlib

    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(THEME):
            return draw(*args, **kwargs)
    return wrapper


def _legend_above(ax, ncol: int) -> None:
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=ncol, fontsize=8, borderaxespad=0.0)


def _grouped_bars(ax, labels: list[str], series: list[tuple[str, list]], errors: list[list] | None = None,
                  colours=COLOURS) -> None:
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series):
        heights = [np.nan if v is None else v for v in values]
        err = None
        if errors is not None and errors[i] is not None:
            err = [0 if e is None else e for e in errors[i]]
        ax.bar(x + (i - (n - 1) / 2) * width, heights, width, label=name, color=colours[i % len(colours)],
               yerr=err, capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.set_xticks(x, labels, rotation=30, ha="right")


@_themed
def confusion_figure(matrix: np.ndarray, classes: list[str]):
    """Rows: conditioned class; columns: the evaluator's call; cells show the row share in percent."""
    k = len(classes)
    figure = _figure(max(5.0, 1.8 + 0.62 * k), 1.2 + 0.55 * k)
    ax = figure.add_subplot()
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.grid(False)
    ax.set_xticks(range(k), classes, rotation=35, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("evaluator's call")
    ax.set_ylabel("conditioned class")
    ax.set_title("Generated images: the evaluator's call (%)")
    for r in range(k):
        for c in range(k):
            ax.text(c, r, f"{share[r, c] * 100:.0f}", ha="center", va="center", fontsize=8,
                    color="black" if share[r, c] > 0.6 else "white")
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the row")
    return figure


@_themed
def bars_figure(title: str, labels: list[str], series: list[tuple[str, list]], ylabel: str,
                errors: list[list] | None = None, ylim: tuple[float, float] | None = (0, 1.05)):
    figure = _figure(max(MIN_WIDTH, 1.6 + 0.75 * len(labels)), 3.4)
    ax = figure.add_subplot()
    _grouped_bars(ax, labels, series, errors)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title, pad=22, wrap=True)
    _legend_above(ax, len(series))
    return figure


TILE, GAP = 64, 6


def _tile(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.shape[0] == TILE:
        return image
    interpolation = cv2.INTER_NEAREST if image.shape[0] < TILE else cv2.INTER_AREA
    return cv2.resize(image, (TILE, TILE), interpolation=interpolation)


def _mosaic(rows: list[list[np.ndarray | None]], group: int) -> np.ndarray:
    """One grey image of TILE-px tiles (None = blank), with a wider gap after every `group` columns.
    One imshow of a mosaic is far cheaper than an axes per image."""
    columns = max(len(r) for r in rows)
    extra = (columns - 1) // group * 3 * GAP
    mosaic = np.full((len(rows) * (TILE + GAP) - GAP, columns * (TILE + GAP) - GAP + extra), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is not None:
                x = c * (TILE + GAP) + c // group * 3 * GAP
                mosaic[r * (TILE + GAP):r * (TILE + GAP) + TILE, x:x + TILE] = _tile(image)
    return mosaic


def _tile_x(column: int, group: int) -> float:
    return column * (TILE + GAP) + column // group * 3 * GAP


@_themed
def real_beside_synthetic_figure(classes: list[str], real: tuple[np.ndarray, np.ndarray],
                                 gen: tuple[np.ndarray, np.ndarray], columns: int = 4, seed: int = 0):
    """Per class (rows): `columns` real training images, then `columns` generated ones."""
    (real_x, real_y), (gen_x, gen_y) = real, gen
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(len(classes)):
        row = []
        for x, y in ((real_x, real_y), (gen_x, gen_y)):
            members = np.flatnonzero(y == r)
            picked = rng.choice(members, min(columns, members.size), replace=False) if members.size else []
            row += [x[i] for i in picked] + [None] * (columns - len(picked))
        rows.append(row)
    mosaic = _mosaic(rows, columns)
    figure = _figure(1.8 + 1.0 * 2 * columns, 0.5 + 0.95 * len(classes))
    ax = figure.add_subplot()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    for r, name in enumerate(classes):
        ax.text(-GAP, r * (TILE + GAP) + TILE / 2, name, ha="right", va="center", fontsize=9)
    ax.text(0, -GAP, "real (training)", ha="left", va="bottom", fontsize=9, fontweight="bold")
    ax.text(_tile_x(columns, columns), -GAP, "generated", ha="left", va="bottom", fontsize=9, fontweight="bold")
    return figure


@_themed
def nearest_figure(classes: list[str], gen: tuple[np.ndarray, np.ndarray], train_x: np.ndarray,
                   ratio: np.ndarray, index: np.ndarray, threshold: float, identity: Callable[[int], tuple],
                   pairs: int = 3):
    """Per class: the generated images most like a training image, each beside that image, with the
    copy ratio and the training image's name and patient id; near-copies in red."""
    gen_x, gen_y = gen
    rows, notes = [], []
    for r in range(len(classes)):
        members = np.flatnonzero(gen_y == r)
        order = members[np.argsort(ratio[members])][:pairs]
        row, note = [], []
        for i in order:
            row += [gen_x[i], train_x[index[i]]]
            file_name, patient = identity(int(index[i]))
            note.append((f"ratio {ratio[i]:.2f}", f"{file_name or 'training image'}\npatient {patient or '?'}",
                         ratio[i] < threshold))
        rows.append(row + [None] * (2 * pairs - len(row)))
        notes.append(note)
    mosaic = _mosaic(rows, 2)
    row_height = TILE + GAP + 22
    figure = _figure(0.8 + 2.6 * pairs, 0.6 + 1.45 * len(classes))
    ax = figure.add_subplot()
    ax.set_axis_off()
    # stretch the rows apart so two caption lines fit under each tile
    canvas = np.full((len(classes) * row_height, mosaic.shape[1]), 255, np.uint8)
    for r in range(len(classes)):
        canvas[r * row_height:r * row_height + TILE] = mosaic[r * (TILE + GAP):r * (TILE + GAP) + TILE]
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    for r, name in enumerate(classes):
        ax.text(-GAP, r * row_height + TILE / 2, name, ha="right", va="center", fontsize=8)
        for p, (left, right, copy) in enumerate(notes[r]):
            y = r * row_height + TILE + 1
            ax.text(_tile_x(2 * p, 2), y, left, ha="left", va="top", fontsize=6,
                    color="#c24b4b" if copy else "#222222")
            ax.text(_tile_x(2 * p + 1, 2), y, right, ha="left", va="top", fontsize=6)
    ax.set_title("Generated image (left) beside its nearest training image (right)", fontsize=10)
    return figure


def evaluation_figures(report: dict, gen: tuple, train: tuple, ratio: np.ndarray, index: np.ndarray,
                       identity: Callable[[int], tuple]) -> dict:
    classes = report["classes"]
    cond, ssim, pr = report["conditional_accuracy"], report["ms_ssim"], report["prdc"]
    keys = ("precision", "recall", "density", "coverage")

    def prdc_values(section):
        return [None if section is None else section[k] for k in keys]

    return {
        "confusion": confusion_figure(np.array(cond["confusion"]), classes),
        "accuracy": bars_figure("Evaluator on held-out real images vs conditional accuracy of generated ones",
                                classes, [("real held-out (evaluator accuracy)",
                                           [report["evaluator"]["per_class"][c] for c in classes]),
                                          ("generated (conditional accuracy)", [cond["per_class"][c] for c in classes])],
                                "share in the class"),
        "prdc": bars_figure(f"Precision, recall, density, coverage (k = {pr['k']}) against training images",
                            list(keys), [("generated", prdc_values(pr["generated"]["overall"])),
                                         ("held-out real (reference)", prdc_values(pr["real_reference"]["overall"]))],
                            "value", ylim=None),
        "coverage": bars_figure("Coverage per class (share of real neighbourhoods reached)", classes,
                                [("generated", [None if pr["generated"]["per_class"][c] is None
                                                else pr["generated"]["per_class"][c]["coverage"] for c in classes]),
                                 ("held-out real (reference)",
                                  [None if pr["real_reference"]["per_class"][c] is None
                                   else pr["real_reference"]["per_class"][c]["coverage"] for c in classes])],
                                "coverage"),
        "diversity": bars_figure("Mean pairwise MS-SSIM within a class (lower = more diverse)", classes,
                                 [("real", [ssim["real_per_class"][c] for c in classes]),
                                  ("generated", [ssim["generated_per_class"][c] for c in classes])], "MS-SSIM"),
        "real_vs_synthetic": real_beside_synthetic_figure(classes, train, gen),
        "nearest": nearest_figure(classes, gen, train[0], ratio, index,
                                  report["memorisation"]["ratio_threshold"], identity),
    }


def bench_figures(report: dict) -> dict:
    classes, arms = report["classes"], report["arms"]
    names = list(arms)
    best = report["verdict"].get("best_arm")
    shown = [a for a in ("real", "duplicate_control") if a in arms] + ([best] if best and best in arms else [])
    gains = [arms[a]["gain_vs_control"]["balanced_accuracy"] for a in names]
    return {
        "bench_accuracy": _arm_bars(names, [arms[a]["balanced_accuracy"] for a in names],
                                    [arms[a]["rare_recall"] for a in names]),
        "bench_gain": _gain_figure(names, gains),
        "bench_recall": bars_figure("Recall per class on held-out real images (mean, whiskers: std over seeds)",
                                    classes, [(a, [arms[a]["per_class"][c]["recall"]["mean"] for c in classes])
                                              for a in shown],
                                    "recall", errors=[[arms[a]["per_class"][c]["recall"]["std"] for c in classes]
                                                      for a in shown]),
    }


@_themed
def _arm_bars(names: list[str], balanced: list[dict], rare: list[dict]):
    figure = _figure(max(MIN_WIDTH, 1.8 + 0.9 * len(names)), 3.6)
    ax = figure.add_subplot()
    _grouped_bars(ax, names, [("balanced accuracy", [s["mean"] for s in balanced]),
                              ("recall of the 3 rarest classes", [s["mean"] for s in rare])],
                  errors=[[s["std"] for s in balanced], [s["std"] for s in rare]])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out real test split")
    ax.set_title("Every arm: mean over seeds, whiskers +-1 std", pad=22, wrap=True)
    _legend_above(ax, 2)
    return figure


@_themed
def _gain_figure(names: list[str], gains: list[dict]):
    figure = _figure(max(MIN_WIDTH, 1.8 + 0.9 * len(names)), 3.6)
    ax = figure.add_subplot()
    means = [g["mean"] for g in gains]
    errors = [0 if g["se"] is None else 2 * g["se"] for g in gains]
    colours = ["#4c9a5a" if m - e > 0 else "#c24b4b" if m + e < 0 else "#8c8c8c" for m, e in zip(means, errors)]
    ax.bar(range(len(names)), means, color=colours, yerr=errors, capsize=3,
           error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("gain in balanced accuracy")
    ax.set_title("Gain over repeating real images (paired per seed, whiskers +-2 SE)", wrap=True)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=THEME["savefig.dpi"])
    return buffer.getvalue()


def save_figures(out: Path, figures: dict) -> dict[str, str]:
    """Write every figure as `out/<name>.png` (atomically); returns {name: file name}."""
    from core.atomic import atomic_write_bytes

    names = {}
    for name, figure in figures.items():
        atomic_write_bytes(Path(out) / f"{name}.png", png_bytes(figure))
        names[name] = f"{name}.png"
    return names
