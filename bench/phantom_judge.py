"""How learnable are the phantoms? The project's judge classifier, per difficulty, on held-out phantoms.

    .venv/bin/python bench/phantom_judge.py [--difficulty easy realistic hard] [--size 64 128]
        [--train-per-class 300] [--test-per-class 100] [--steps 2000 4000] [--seeds 1]

For each difficulty and size: draws `--train-per-class` single-label phantoms of each class (seed 1) and
`--test-per-class` held-out ones (seed 2) at twice the size (at least 128 px), shrinks them with INTER_AREA as
`prepare` does, trains `core.evaluation.classifier` on the training ones and prints its held-out accuracy per class
(inference mode) after each of the `--steps` counts (one training run, evaluated on the way). Target for `realistic` at 64 px: 85-92% overall with every class >= ~70% (an independent
judge reached 92% on realistic phantoms of its own); 99% everywhere would mean the findings are too easy,
a class near chance (14%) that they are too hard. The machine's load average is printed with the timings.

Measured 2026-11-26 with the defaults at 64 px (300/80 per class; load 9-20 on 2 shared cores):
realistic 61% after 2000 steps, 86.1% (every class >= 68%) after 3000, 86.4% (>= 72%) after 4000;
easy 99.3% (>= 98%); hard 14% (the judge does not learn it at 64 px with this much data).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.data.phantoms import DIFFICULTIES, draw_phantom  # noqa: E402
from core.labels import DEFAULT_CLASSES  # noqa: E402



def phantom_images(difficulty: str, size: int, per_class: int, seed: int,
                   classes=DEFAULT_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size) single-label phantoms, `per_class` of each class, and their class indices.
    Views (60% PA) and sexes vary as in the demo dataset; each image has its own seeded generator."""
    render = max(128, 2 * size)

    def one(item):
        c, k = item
        rng = np.random.default_rng([seed, c, k])
        view = "PA" if rng.random() < 0.6 else "AP"
        sex = "M" if rng.random() < 0.56 else "F"
        image = draw_phantom((classes[c],), render, rng, view, difficulty, sex).image
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

    items = [(c, k) for c in range(len(classes)) for k in range(per_class)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = np.stack(list(pool.map(one, items)))
    return images, np.array([c for c, _ in items], dtype=np.int32)


def train_judge(images: np.ndarray, labels: np.ndarray, n_classes: int, steps: int, seed: int = 0):
    """The project's judge classifier trained on these images; returns an `Embedder` (probs, features)."""
    return next(train_judge_stages(images, labels, n_classes, [steps], seed))[1]


def train_judge_stages(images: np.ndarray, labels: np.ndarray, n_classes: int, steps: list[int], seed: int = 0):
    """Yield (steps, Embedder) after each of the ascending step counts of one continued training run."""
    from core.evaluation.classifier import ClassifierConfig, Embedder, train_classifier

    model, done = None, 0
    for stage, total in enumerate(sorted(steps)):
        # each stage continues the model and its optimiser; its batches come from their own seed
        config = ClassifierConfig(steps=total - done, seed=seed + 1000 * stage)
        model = train_classifier(images, labels, n_classes, config, model=model)
        done = total
        yield total, Embedder(model)


def per_class_accuracy(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> list[float]:
    hits = probs.argmax(axis=1) == labels
    return [float(hits[labels == c].mean()) for c in range(n_classes)]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--difficulty", nargs="+", default=list(DIFFICULTIES), choices=list(DIFFICULTIES))
    parser.add_argument("--size", nargs="+", type=int, default=[64])
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 4000],
                        help="classifier training steps (batch 64) at which to report")
    parser.add_argument("--seeds", type=int, default=1, help="classifier seeds (the data stays the same)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per result")
    args = parser.parse_args()

    n = len(DEFAULT_CLASSES)
    print(f"judge classifier, {args.train_per_class} training / {args.test_per_class} held-out phantoms per class, "
          f"{args.steps} steps; load average {load_average()}", flush=True)
    print(f"{'difficulty':>10} {'size':>4} {'seed':>4} {'steps':>5} {'overall':>7} {'min':>5}  "
          + " ".join(f"{name[:11]:>11}" for name in DEFAULT_CLASSES) + "   data_s train_s")
    for difficulty in args.difficulty:
        for size in args.size:
            t = time.monotonic()
            train_x, train_y = phantom_images(difficulty, size, args.train_per_class, seed=1)
            test_x, test_y = phantom_images(difficulty, size, args.test_per_class, seed=2)
            data_s = time.monotonic() - t
            for seed in range(args.seeds):
                t = time.monotonic()
                for steps, judge in train_judge_stages(train_x, train_y, n, args.steps, seed):
                    train_s = time.monotonic() - t
                    accuracy = per_class_accuracy(judge(test_x)[0], test_y, n)
                    overall = float(np.mean(accuracy))
                    print(f"{difficulty:>10} {size:>4} {seed:>4} {steps:>5} {overall:>7.1%} {min(accuracy):>5.0%}  "
                          + " ".join(f"{a:>11.0%}" for a in accuracy) + f"   {data_s:>6.0f} {train_s:>7.0f}",
                          flush=True)
                    if args.json:
                        print(json.dumps({"difficulty": difficulty, "size": size, "seed": seed, "steps": steps,
                                          "overall": overall, "per_class": dict(zip(DEFAULT_CLASSES, accuracy)),
                                          "load": load_average()}))
    print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
