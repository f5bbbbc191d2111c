"""Image sources that stand in for generators in the augmentation-bench tests, with known behaviour.

`ToySource(kind="oracle")` draws fresh "real" toy images of the requested class (the upper bound: as
good as more real data); `kind="random_labels"` draws an image of a random class whatever was asked
(the lower bound). Both have the generator's `classes`, `size`, `run_dir` and
`iter_batches(labels, seeds, truncation)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.evaluation.real_data import RealData
from tests.test_generate import TOY_CLASSES, toy_pattern


def toy_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    image = toy_pattern(label, size) + rng.normal(0, 0.15, (size, size)).astype(np.float32)
    image = np.roll(image, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
    return np.clip(np.rint((image + 1) * 127.5), 0, 255).astype(np.uint8)


def imbalanced_toy_data(train_counts=(60, 10, 10), test_per_class: int = 12, size: int = 32, seed: int = 0,
                        classes=None):
    """RealData with the given training counts per class and a balanced test split."""
    rng = np.random.default_rng(seed)
    labels, split = [], []
    for c, n in enumerate(train_counts):
        labels += [c] * (n + test_per_class)
        split += ["train"] * n + ["test"] * test_per_class
    labels = np.asarray(labels, np.int32)
    images = np.stack([toy_image(int(c), size, rng) for c in labels])
    names = np.array([f"{i:08d}_000.png" for i in range(len(labels))], dtype=object)
    classes = list(classes or TOY_CLASSES[:len(train_counts)])
    return RealData(images=images, labels=labels, split=np.asarray(split), classes=classes,
                    source="toy", names=names, patient_ids=np.array([str(i) for i in range(len(labels))], dtype=object))


class ToySource:
    def __init__(self, run_dir: Path, kind: str = "oracle", size: int = 32, classes=TOY_CLASSES):
        self.run_dir, self.kind, self.size, self.classes = Path(run_dir), kind, size, list(classes)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def iter_batches(self, labels, seeds, truncation: float = 1.0):
        images = []
        for label, seed in zip(labels, seeds):
            rng = np.random.default_rng(int(seed))
            drawn = int(rng.integers(len(self.classes))) if self.kind == "random_labels" else int(label)
            images.append(toy_image(drawn, self.size, rng))
        for start in range(0, len(images), 64):
            yield np.stack(images[start:start + 64])


def write_toy_cache(path: Path, real: RealData) -> Path:
    """A prepared-cache folder holding `real` (what `PreparedCache.open` reads), for CLI tests."""
    import json

    import pandas as pd

    path.mkdir(parents=True)
    np.save(path / "images.npy", real.images)
    pd.DataFrame({"image": real.names, "patient_id": real.patient_ids, "age": 50, "sex": "F", "view": "PA",
                  "finding_labels": [real.classes[c] for c in real.labels], "label": real.labels,
                  "class": [real.classes[c] for c in real.labels], "split": real.split}).to_csv(path / "meta.csv",
                                                                                                index=False)
    (path / "cache.json").write_text(json.dumps({"classes": real.classes, "size": int(real.images.shape[1]),
                                                 "prepared": int(len(real.labels))}))
    return path
