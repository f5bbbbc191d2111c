"""Training images in, class-balanced batches out.

A batch is a pure function of (seed, pipeline id, slot number): `sample_indices` draws it from its own
numpy generator keyed by those numbers. So the stream needs no saved state: a resumed run starts the
`tf.data` range at its step and gets exactly the batches the uninterrupted run would have had.
Images stay in the cache's memory map; only each batch's rows are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError


@dataclass
class TrainingData:
    images: np.ndarray   # uint8 (M, S, S), may be a memmap
    labels: np.ndarray   # int32 (N,) class index of each training image
    classes: list[str]
    source: str = "arrays"
    rows: np.ndarray | None = None   # (N,) rows of `images` that are training images; None = all

    def read(self, index: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) of training images `index` (reads only those rows of a memmap)."""
        return np.asarray(self.images[index if self.rows is None else self.rows[index]])

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def by_class(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.labels == k) for k in range(len(self.classes))]

    def validate(self, size: int, batch: int) -> None:
        """UserError naming the data source for anything that makes training impossible."""
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2]:
            raise UserError(f"{self.source}: images must be (N, S, S), got {self.images.shape}")
        if self.images.dtype != np.uint8:
            raise UserError(f"{self.source}: images must be uint8, got {self.images.dtype}")
        if len(self.labels) != (len(self.images) if self.rows is None else len(self.rows)):
            raise UserError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")
        if self.size != size:
            raise UserError(f"{self.source}: images are {self.size} px but --size is {size}; "
                            f"prepare the cache at {size} px or change --size")
        if len(self.classes) < 2:
            raise UserError(f"{self.source}: a conditional GAN needs at least 2 classes, got {self.classes}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise UserError(f"{self.source}: labels must be class indices 0..{len(self.classes) - 1}")
        empty = [name for name, rows in zip(self.classes, self.by_class()) if len(rows) == 0]
        if empty:
            raise UserError(f"{self.source}: no training images for class(es) {', '.join(empty)}")
        if batch > len(self.labels):
            raise UserError(f"{self.source}: --batch {batch} is larger than the {len(self.labels)} "
                            f"training images")


def open_cache(path: str | Path, classes: list[str] | None = None, split: str = "train") -> TrainingData:
    """The `split` rows of a prepared cache, labelled in the order of `classes` (default: the cache's own).

    A cache may hold more classes than the run learns: only images of `classes` are used. A class the
    cache does not hold is a UserError naming it."""
    from core.data.cache import PreparedCache

    cache = PreparedCache.open(path)
    classes = list(cache.classes) if classes is None else list(classes)
    missing = [name for name in classes if name not in cache.classes]
    if missing:
        raise UserError(f"{path}: the prepared cache has no class(es) {', '.join(missing)} "
                        f"(it holds {', '.join(cache.classes)}); prepare it with those classes")
    ours = np.array([classes.index(name) if name in classes else -1 for name in cache.classes], np.int32)
    labels = ours[np.asarray(cache.labels)]
    rows = np.flatnonzero((np.asarray(cache.split) == split) & (labels >= 0))
    if len(rows) == 0:
        raise UserError(f"{path}: the prepared cache has no {split!r} images of {', '.join(classes)}")
    return TrainingData(images=cache.images, labels=labels[rows].astype(np.int32), classes=classes,
                        source=str(path), rows=rows)


def sample_indices(by_class: list[np.ndarray], n_total: int, batch: int, balanced: bool,
                   key: tuple[int, ...]) -> np.ndarray:
    """Row indices of one batch. Balanced: each class gets batch // k slots, the rest go to random classes."""
    rng = np.random.default_rng(list(key))
    if not balanced:
        return rng.integers(0, n_total, size=batch)
    k = len(by_class)
    classes = np.concatenate([np.repeat(np.arange(k), batch // k), rng.choice(k, batch % k, replace=False)])
    rng.shuffle(classes)
    return np.array([by_class[c][rng.integers(len(by_class[c]))] for c in classes], dtype=np.int64)


def make_dataset(data: TrainingData, batch: int, balanced: bool, seed: int, first_slot: int, last_slot: int,
                 pipeline_id: int = 0):
    """tf.data of (images uint8 (batch, S, S), labels int32 (batch,)) for slots first_slot..last_slot-1."""
    import tensorflow as tf

    by_class = data.by_class()
    size = data.size

    def load(slot):
        rows = sample_indices(by_class, len(data.labels), batch, balanced, (seed, pipeline_id, int(slot)))
        order = np.argsort(rows, kind="stable")
        images = np.empty((batch, size, size), np.uint8)
        images[order] = data.read(rows[order])
        return images, data.labels[rows].astype(np.int32)

    def load_tf(slot):
        images, labels = tf.numpy_function(load, [slot], [tf.uint8, tf.int32], stateful=False)
        return tf.ensure_shape(images, (batch, size, size)), tf.ensure_shape(labels, (batch,))

    dataset = tf.data.Dataset.range(first_slot, last_slot).map(load_tf)
    return dataset.prefetch(2)
