"""An honest quality evaluation of a trained generator, against the real images it learned from.

No pretrained network can be downloaded here, so the judge is a small classifier the tool trains on the
real training split (`core.evaluation.classifier`, cached in the run folder). Measures, per class and overall:

- the evaluator's own accuracy on held-out real images (how far to trust the rest);
- conditional accuracy: the share of generated images the evaluator puts in the conditioned class
  (a generator that ignores its label scores near chance, 1 / number of classes);
- Fréchet distance and KID between generated and real training images in the evaluator's penultimate
  features, beside the same figures for held-out real vs training real (the floor a perfect
  generator would reach with that many images);
- diversity: mean pairwise MS-SSIM within a class, generated beside real (higher = more alike;
  a collapsed generator approaches 1). The number of scales shrinks with the image: 2 at 32 px,
  3 at 64 px, 4 at 128 px, 5 from 256 px, so each scale stays larger than the 11 px window;
- memorisation: for each generated image, the RMS pixel distance (at 32x32, grey levels / 255) to its
  nearest training image, divided by that training image's distance to its own nearest other training
  image. A copy scores ~0; a new image ~1. Raw distance alone is misleading: a smooth "average" image is
  closer to every training image than real images are, without copying any. The near-copy threshold is
  the 1st percentile of the same ratio for held-out real images (different patients), capped at 0.5.

Writes `report.json` and PNG plots (drawn with OpenCV; no plotting library is installed) to
`RUN/evaluation/`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.evaluation.classifier import ClassifierConfig, Embedder, accuracy_per_class, cached_classifier
from core.export.generator import Generator, load_generator, real_cache
from core.jobs import Job

REPORT_NAME = "report.json"
NEAREST_SIDE = 32
MAX_REAL_PER_CLASS = 2000
MAX_COPY_RATIO = 0.5
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass
class EvaluateConfig:
    run: str
    data: str = ""            # prepared cache or NIH dataset folder; "" = the run's own cache
    n: int = 500              # generated images per class
    seed: int = 0
    classifier_steps: int = 800
    pairs: int = 200          # MS-SSIM pairs per class
    out: str = ""             # "" = RUN/evaluation


@dataclass
class RealData:
    """Real images at the generator's size, with class indices in the generator's class order."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: list[str]
    source: str = "arrays"

    def part(self, *names: str) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(np.isin(self.split, names))
        return np.asarray(self.images[rows]), self.labels[rows]

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.part("test")
        return (images, labels) if len(labels) else self.part("val")


def open_real_data(path: Path, classes: list[str], size: int) -> RealData:
    """The prepared cache's images of the generator's classes, resized to `size` if needed."""
    import cv2

    from core.data.cache import PreparedCache

    cache = PreparedCache.open(Path(path))
    missing = [c for c in classes if c not in cache.classes]
    if missing:
        raise UserError(f"{path}: the cache has no images of class(es) {', '.join(missing)} that the generator makes")
    ours = np.array([classes.index(c) if c in classes else -1 for c in cache.classes])[np.asarray(cache.labels)]
    rows = np.flatnonzero(ours >= 0)
    images = np.asarray(cache.images[rows])
    if images.shape[1] != size:
        images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return RealData(images=images, labels=ours[rows].astype(np.int32), split=np.asarray(cache.split)[rows],
                    classes=list(classes), source=str(path))


# --- measures ----------------------------------------------------------------------------------------

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2); None with fewer than 2 samples on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(s_a @ s_b)
    root_trace = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(mu @ mu + np.trace(s_a) + np.trace(s_b) - 2 * root_trace)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 100,
                              seed: int = 0) -> float | None:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (KID)."""
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return None
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(off - 2 * k_xy.mean())
    return float(np.mean(values))


def ms_ssim_scales(size: int, window: int = 11) -> int:
    """Scales whose smallest image still holds the SSIM window (2 at 32 px ... 5 from 256 px)."""
    return int(max(1, min(5, np.floor(np.log2(size / window)) + 1)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM of uint8 image pairs (N, S, S), with as many scales as the size allows."""
    import tensorflow as tf

    scales = ms_ssim_scales(a.shape[1])
    weights = np.array(_MS_SSIM_WEIGHTS[:scales]) / sum(_MS_SSIM_WEIGHTS[:scales])
    x = tf.cast(tf.convert_to_tensor(a[..., None]), tf.float32)
    y = tf.cast(tf.convert_to_tensor(b[..., None]), tf.float32)
    return tf.image.ssim_multiscale(x, y, max_val=255.0, power_factors=weights.tolist()).numpy()


def mean_pairwise_ms_ssim(images: np.ndarray, pairs: int, seed: int) -> float | None:
    n = len(images)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n
    return float(np.mean(ms_ssim(images[i], images[j])))


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """Images as float32 vectors of 32x32 grey levels in 0..1, the space of the memorisation check."""
    import cv2

    if images.shape[1] != NEAREST_SIDE:
        images = np.stack([cv2.resize(im, (NEAREST_SIDE, NEAREST_SIDE), interpolation=cv2.INTER_AREA)
                           for im in images])
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def nearest_distances(query: np.ndarray, reference: np.ndarray, exclude: np.ndarray | None = None,
                      chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """RMS distance (0..1) from each query vector to its nearest reference vector, and that vector's index.

    `exclude[i]` is a reference index query i may not match (itself, when querying the reference set).
    """
    r_sq = (reference * reference).sum(1)
    dist, index = np.empty(len(query), np.float32), np.empty(len(query), np.int64)
    for start in range(0, len(query), chunk):
        block = query[start:start + chunk]
        d2 = (block * block).sum(1)[:, None] + r_sq[None, :] - 2 * block @ reference.T
        if exclude is not None:
            d2[np.arange(len(block)), exclude[start:start + chunk]] = np.inf
        index[start:start + chunk] = d2.argmin(1)
        dist[start:start + chunk] = np.sqrt(np.clip(d2.min(1), 0, None) / query.shape[1])
    return dist, index


def memorisation_ratios(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query vector: distance to the nearest training vector, its index, and that distance divided by
    the training image's own distance to its nearest other training image (~0 for a copy, ~1 for new)."""
    distance, index = nearest_distances(query, train)
    if len(train) < 2:
        return distance, index, np.ones_like(distance)
    neighbours = np.unique(index)
    own, _ = nearest_distances(train[neighbours], train, exclude=neighbours)
    spacing = np.maximum(own[np.searchsorted(neighbours, index)], 1e-6)
    return distance, index, distance / spacing


def _per_class(values: list) -> dict:
    return {name: (None if v is None else round(float(v), 4)) for name, v in values}


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


# --- the evaluation ----------------------------------------------------------------------------------

def _subsample_per_class(labels: np.ndarray, n_classes: int, cap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(labels == c) for c in range(n_classes)]
    return np.sort(np.concatenate([r if len(r) <= cap else rng.choice(r, cap, replace=False) for r in rows]))


def generate_per_class(generator: Generator, n: int, seed: int, job: Job, progress: tuple[int, int]):
    """n images of every class, from latent seeds drawn with `seed`; returns (images, labels)."""
    labels = np.repeat(np.arange(len(generator.classes)), n).astype(np.int32)
    seeds = np.random.default_rng(seed).choice(2 ** 52, size=len(labels), replace=False)
    offset, total = progress
    batches = []
    for batch in generator.iter_batches(labels, seeds):
        job.check()
        batches.append(batch)
        job.report(offset + sum(len(b) for b in batches), total, "generating")
    return np.concatenate(batches), labels


def _feature_distances(gen: tuple, real: tuple, held_out: tuple, classes: list[str], seed: int) -> dict:
    """FD and KID, generated vs training real, beside held-out real vs training real (the floor)."""
    (gen_f, gen_y), (real_f, real_y), (test_f, test_y) = gen, real, held_out
    section = {}
    for name, distance in (("frechet_distance", frechet_distance),
                           ("kid", lambda a, b: kernel_inception_distance(a, b, seed=seed))):
        section[name] = {
            "overall": _round(distance(gen_f, real_f)),
            "per_class": _per_class((c, distance(gen_f[gen_y == i], real_f[real_y == i]))
                                    for i, c in enumerate(classes)),
            "real_held_out_overall": _round(distance(test_f, real_f)),
            "real_held_out_per_class": _per_class((c, distance(test_f[test_y == i], real_f[real_y == i]))
                                                  for i, c in enumerate(classes))}
    return section


def _diversity(gen: tuple, real: tuple, classes: list[str], pairs: int, seed: int) -> dict:
    (gen_x, gen_y), (real_x, real_y) = gen, real
    generated = [mean_pairwise_ms_ssim(gen_x[gen_y == i], pairs, seed) for i in range(len(classes))]
    reals = [mean_pairwise_ms_ssim(real_x[real_y == i], pairs, seed) for i in range(len(classes))]
    return {"scales": ms_ssim_scales(gen_x.shape[1]), "pairs_per_class": pairs,
            "generated_mean": _mean(generated), "real_mean": _mean(reals),
            "generated_per_class": _per_class(zip(classes, generated)),
            "real_per_class": _per_class(zip(classes, reals))}


def _memorisation(gen: tuple, test_x: np.ndarray, train_x: np.ndarray, classes: list[str]):
    """The memorisation section, plus each generated image's copy ratio and nearest training index."""
    gen_x, gen_y = gen
    train_vectors = pixel_vectors(train_x)
    gen_nn, gen_index, gen_ratio = memorisation_ratios(pixel_vectors(gen_x), train_vectors)
    real_nn, _, real_ratio = memorisation_ratios(pixel_vectors(test_x), train_vectors)
    threshold = min(MAX_COPY_RATIO, float(np.percentile(real_ratio, 1)))
    flagged = gen_ratio < threshold
    section = {"ratio_threshold": round(threshold, 4), "flagged": int(flagged.sum()),
               "flagged_share": round(float(flagged.mean()), 4),
               "flagged_per_class": {c: int(flagged[gen_y == i].sum()) for i, c in enumerate(classes)},
               "median_ratio_generated": round(float(np.median(gen_ratio)), 4),
               "median_ratio_real_held_out": round(float(np.median(real_ratio)), 4),
               "median_distance_generated": round(float(np.median(gen_nn)), 5),
               "median_distance_real_held_out": round(float(np.median(real_nn)), 5)}
    return section, gen_ratio, gen_index


def _classification(test_probs, test_y, gen_probs, gen_y, classes: list[str], cached: bool, steps: int,
                    n_train: int) -> dict:
    """The evaluator's own held-out accuracy and the conditional accuracy of the generated images."""
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (gen_y, gen_probs.argmax(1)), 1)
    conditional = [float(confusion[c, c] / confusion[c].sum()) for c in range(k)]
    return {
        "evaluator": {"held_out_accuracy": round(float((test_probs.argmax(1) == test_y).mean()), 4),
                      "per_class": _per_class(zip(classes, accuracy_per_class(test_probs, test_y, k))),
                      "held_out_images": int(len(test_y)), "train_images": n_train, "steps": steps,
                      "cached": cached},
        "conditional_accuracy": {"mean": _mean(conditional), "chance": round(1 / k, 4),
                                 "per_class": _per_class(zip(classes, conditional)), "confusion": confusion.tolist()},
    }


def evaluate(config: EvaluateConfig, job: Job | None = None, real: RealData | None = None,
             generator: Generator | None = None) -> dict:
    """Run the whole evaluation, write report.json and plots, return the report."""
    job = job or Job()
    started = time.monotonic()
    if config.n < 2:
        raise UserError("--n must be at least 2 generated images per class")
    generator = generator or load_generator(config.run)
    out = Path(config.out) if config.out else generator.run_dir / "evaluation"
    if real is None:
        real = open_real_data(real_cache(generator, config.data, job), generator.classes, generator.size)
    classes, k = generator.classes, len(generator.classes)
    train_x, train_y = real.part("train")
    test_x, test_y = real.held_out()
    if len(train_y) == 0 or len(test_y) == 0:
        raise UserError(f"{real.source}: needs real images in both the train and the test (or val) split")
    total = config.classifier_steps + k * config.n + 3
    model, cached = cached_classifier(generator.run_dir / "evaluation", train_x, train_y, classes,
                                      ClassifierConfig(steps=config.classifier_steps, seed=config.seed), job,
                                      (0, total))
    done = config.classifier_steps
    embed = Embedder(model)
    gen_x, gen_y = generate_per_class(generator, config.n, config.seed, job, (done, total))
    done += k * config.n
    keep = _subsample_per_class(train_y, k, MAX_REAL_PER_CLASS, config.seed)
    (test_probs, test_feats), (gen_probs, gen_feats) = embed(test_x), embed(gen_x)
    real_feats = embed(train_x[keep])[1]
    job.check()
    job.report(done + 1, total, "Fréchet distance, KID, MS-SSIM")
    report = {"run": str(generator.run_dir), "data": real.source, "classes": classes, "size": generator.size,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model_sha256": generator.sha256, "n_per_class": config.n, "seed": config.seed,
              **_classification(test_probs, test_y, gen_probs, gen_y, classes, cached, config.classifier_steps,
                                len(train_y)),
              **_feature_distances((gen_feats, gen_y), (real_feats, train_y[keep]), (test_feats, test_y), classes,
                                   config.seed),
              "ms_ssim": _diversity((gen_x, gen_y), (train_x[keep], train_y[keep]), classes, config.pairs, config.seed)}
    job.check()
    job.report(done + 2, total, "nearest training images")
    report["memorisation"], gen_ratio, gen_index = _memorisation((gen_x, gen_y), test_x, train_x, classes)
    report["plots"] = write_evaluation_plots(out, report, gen_x, train_x, gen_ratio, gen_index)
    report["seconds"] = round(time.monotonic() - started, 1)
    _write_json(out / REPORT_NAME, report)
    job.report(total, total, "done")
    return report


def report_table(report: dict) -> tuple[list[str], list[list]]:
    """The headline numbers, one row per class plus 'overall': for the CLI table and the GUI."""
    header = ["class", "eval acc", "cond acc", "FD", "FD real", "KID", "MS-SSIM gen", "MS-SSIM real", "copies"]
    ev, cond, fd, kid = report["evaluator"], report["conditional_accuracy"], report["frechet_distance"], report["kid"]
    ssim, memo = report["ms_ssim"], report["memorisation"]
    rows = [[c, ev["per_class"][c], cond["per_class"][c], fd["per_class"][c], fd["real_held_out_per_class"][c],
             kid["per_class"][c], ssim["generated_per_class"][c], ssim["real_per_class"][c],
             memo["flagged_per_class"][c]] for c in report["classes"]]
    rows.append(["overall", ev["held_out_accuracy"], cond["mean"], fd["overall"], fd["real_held_out_overall"],
                 kid["overall"], ssim["generated_mean"], ssim["real_mean"], memo["flagged"]])
    return header, rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# --- plots (OpenCV drawing: no plotting library is installed) -----------------------------------------

_INK, _GREY = (40, 40, 40), (170, 170, 170)
SERIES_COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214))  # BGR: blue, orange, green, red


def _canvas(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, colour=_INK) -> None:
    import cv2

    cv2.putText(image, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def confusion_image(matrix: np.ndarray, classes: list[str], cell: int = 54) -> np.ndarray:
    """Rows: conditioned class; columns: the evaluator's call; cells show the row share."""
    import cv2

    k = len(classes)
    left, top = 150, 60
    image = _canvas(top + k * cell + 20, max(left + k * cell + 20, 420))
    _text(image, "conditioned class (rows) vs evaluator's call (columns)", 10, 20, 0.45)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    colours = cv2.applyColorMap(np.clip(share * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    for r in range(k):
        _text(image, f"{r} {classes[r][:16]}", 8, top + r * cell + cell // 2 + 4)
        for c in range(k):
            x, y = left + c * cell, top + r * cell
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), tuple(int(v) for v in colours[r, c]), -1)
            ink = (255, 255, 255) if share[r, c] < 0.6 else (0, 0, 0)
            _text(image, f"{share[r, c] * 100:.0f}%", x + 8, y + cell // 2 + 4, 0.4, ink)
            if r == 0:
                _text(image, str(c), x + cell // 2 - 4, top - 8)
    return image


def bar_chart(title: str, labels: list[str], series: list[tuple[str, list]], ymax: float = 1.0,
              spread: list[list] | None = None) -> np.ndarray:
    """Grouped bars, one group per label; `spread` draws +-1 whiskers (e.g. std across seeds)."""
    import cv2

    groups, n = len(labels), max(1, len(series))
    bar, gap, left, top, height = 16, 22, 50, 50, 220
    width = left + groups * (n * bar + gap) + 30
    image = _canvas(top + height + 110, max(width, 360, 20 + 8 * len(title)))
    _text(image, title, 10, 20, 0.5)
    for i, (name, _) in enumerate(series):
        x = 10 + i * 170
        cv2.rectangle(image, (x, 30), (x + 12, 40), SERIES_COLOURS[i % 4], -1)
        _text(image, name[:24], x + 16, 40)
    base = top + height
    for tick in np.linspace(0, ymax, 5):
        y = int(base - tick / ymax * height)
        cv2.line(image, (left - 4, y), (width - 20, y), (230, 230, 230), 1)
        _text(image, f"{tick:.2g}", 5, y + 4, 0.35)
    for g, label in enumerate(labels):
        x0 = left + g * (n * bar + gap) + gap // 2
        for i, (_, values) in enumerate(series):
            value = values[g]
            x = x0 + i * bar
            if value is None:
                _text(image, "-", x + 4, base - 4, 0.35, _GREY)
                continue
            y = int(base - min(max(value, 0), ymax) / ymax * height)
            cv2.rectangle(image, (x, y), (x + bar - 3, base), SERIES_COLOURS[i % 4], -1)
            if spread and spread[i][g] is not None:
                half = int(spread[i][g] / ymax * height)
                cx = x + (bar - 3) // 2
                cv2.line(image, (cx, y - half), (cx, y + half), _INK, 1)
        text_image = _canvas(14, 100)
        _text(text_image, label[:14], 0, 11, 0.38)
        rotated = cv2.rotate(text_image, cv2.ROTATE_90_COUNTERCLOCKWISE)
        xr = x0 + (n * bar) // 2 - 7
        image[base + 6:base + 106, xr:xr + 14] = np.minimum(image[base + 6:base + 106, xr:xr + 14], rotated)
    cv2.line(image, (left, base), (width - 20, base), _INK, 1)
    return image


def nearest_pairs_image(generated: np.ndarray, train: np.ndarray, ratio: np.ndarray, index: np.ndarray,
                        threshold: float, count: int = 8, side: int = 96) -> np.ndarray:
    """The generated images most like a training image, each beside that image; near-copies in red."""
    import cv2

    order = np.argsort(ratio)[:count]
    image = _canvas(30 + len(order) * (side + 22), 2 * side + 30)
    _text(image, "generated | nearest training image", 8, 18, 0.45)
    for row, i in enumerate(order):
        y = 30 + row * (side + 22)
        for col, picture in enumerate((generated[i], train[index[i]])):
            big = cv2.resize(picture, (side, side), interpolation=cv2.INTER_NEAREST)
            image[y:y + side, 10 + col * (side + 10):10 + col * (side + 10) + side] = big[..., None]
        colour = (0, 0, 220) if ratio[i] < threshold else _INK
        _text(image, f"copy ratio {ratio[i]:.3f}", 10, y + side + 15, 0.4, colour)
    return image


def write_evaluation_plots(out: Path, report: dict, generated: np.ndarray, train: np.ndarray,
                           ratio: np.ndarray, index: np.ndarray) -> dict[str, str]:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    classes = report["classes"]
    cond, ssim = report["conditional_accuracy"], report["ms_ssim"]
    figures = {
        "confusion": confusion_image(np.array(cond["confusion"]), classes),
        "accuracy": bar_chart("evaluator accuracy on held-out real vs conditional accuracy of generated",
                              classes, [("real held-out", [report["evaluator"]["per_class"][c] for c in classes]),
                                        ("generated", [cond["per_class"][c] for c in classes])]),
        "diversity": bar_chart("mean pairwise MS-SSIM within class (lower = more diverse)", classes,
                               [("real", [ssim["real_per_class"][c] for c in classes]),
                                ("generated", [ssim["generated_per_class"][c] for c in classes])]),
        "nearest": nearest_pairs_image(generated, train, ratio, index, report["memorisation"]["ratio_threshold"]),
    }
    names = {}
    for name, picture in figures.items():
        ok, encoded = cv2.imencode(".png", picture)
        if ok:
            tmp = out / f".{name}.png.tmp"
            tmp.write_bytes(encoded.tobytes())
            tmp.replace(out / f"{name}.png")
            names[name] = f"{name}.png"
    return names
