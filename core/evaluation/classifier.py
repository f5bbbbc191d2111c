"""The small CNN classifier the tool trains on real images: the judge in `evaluate`, the subject in `augment-bench`.

No pretrained weights can be downloaded here, so quality is measured in the feature space of a
classifier trained on the user's own real training split. It uses GroupNormalization, not BatchNorm:
with few training steps BatchNorm's moving statistics lag far behind the batch statistics and the
classifier sits at chance in inference mode (see FINDINGS). Every image it trains on gets light
augmentation (a shift of up to 6% of the side, brightness +-10%, contrast +-20%), so that in the
augmentation bench repeating real images is not a strawman: repeated images are seen slightly varied.

Batches are drawn in one of two ways (`ClassifierConfig.sampling`):
- "balanced": a class uniformly, then an image of it. The judge in `evaluate` trains this way, so its
  accuracy does not depend on the class frequencies of the user's data.
- "natural": images uniformly, so classes appear as often as they are in the training set. The
  augmentation bench trains this way: it is what a user gets from plain training without the tool,
  and what the added images (synthetic or repeated) are meant to change.

The trained evaluator is cached in the run folder under a key made of the data's fingerprint and the
classifier settings, so a second evaluation of the same run and data skips training.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.jobs import Job

FEATURES_LAYER = "features"
SAMPLINGS = ("balanced", "natural")
ARCHITECTURE_VERSION = 2  # part of the evaluator's cache key: 2 = with brightness/contrast augmentation


@dataclass(frozen=True)
class ClassifierConfig:
    steps: int = 800  # on the phantom data at 64 px: held-out accuracy 0.82 after 400 steps, 0.95 after 800
    batch: int = 64
    learning_rate: float = 1e-3
    width: int = 16
    seed: int = 0
    sampling: str = "balanced"


def _blocks(size: int) -> int:
    """Stride-2 blocks that bring the image down to 4x4 (at least two)."""
    return max(2, int(np.log2(size)) - 2)


def build_classifier(size: int, n_classes: int, config: ClassifierConfig) -> Any:
    """Logits model; its layer `features` (64 units) is the embedding used for FD/KID/PRDC.

    The augmentation layers act only in training mode; inference sees the image as it is."""
    import keras

    keras.utils.set_random_seed(config.seed)
    image = keras.Input((size, size, 1), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = keras.layers.RandomBrightness(0.1, value_range=(-1.0, 1.0), seed=config.seed)(x)
    x = keras.layers.RandomContrast(0.2, value_range=(-1.0, 1.0), seed=config.seed + 1)(x)
    x = keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", fill_value=-1.0, seed=config.seed + 2)(x)
    for i in range(_blocks(size)):
        x = keras.layers.Conv2D(config.width * min(2 ** i, 8), 3, strides=2, padding="same")(x)
        x = keras.layers.GroupNormalization(groups=4)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(64, activation="relu", name=FEATURES_LAYER)(x)
    logits = keras.layers.Dense(n_classes, name="logits")(features)
    return keras.Model(image, logits)


def index_batches(labels: np.ndarray, n_classes: int, batch: int, steps: int, seed: int,
                  sampling: str = "balanced"):
    """Index batches: "balanced" draws a class uniformly, then an image of it; "natural" draws images
    uniformly (classes as frequent as in `labels`)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, not {sampling!r}")
    rng = np.random.default_rng(seed)
    if sampling == "natural":
        for _ in range(steps):
            yield rng.integers(0, len(labels), size=batch)
        return
    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    present = np.array([c for c in range(n_classes) if members[c].size])
    for _ in range(steps):
        classes = rng.choice(present, size=batch)
        yield np.array([members[c][rng.integers(members[c].size)] for c in classes])


def train_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ClassifierConfig,
                     job: Job | None = None, progress: tuple[int, int] | None = None, model: Any = None) -> Any:
    """Train on uint8 (N, S, S) images; `progress` = (offset, total) places the steps in a larger job.

    With `model` (one this function returned), training continues on it with its optimiser state:
    that is how the bench fine-tunes a classifier pre-trained on synthetic images."""
    import keras

    job = job or Job()
    if model is None:
        model = build_classifier(images.shape[1], n_classes, config)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    offset, total = progress or (0, config.steps)
    x_all = images[..., None]
    labels = np.asarray(labels, dtype=np.int32)
    batches = index_batches(labels, n_classes, config.batch, config.steps, config.seed, config.sampling)
    for step, index in enumerate(batches):
        job.check()
        index.sort()
        model.train_on_batch(x_all[index], labels[index])
        job.report(offset + step + 1, total, "training the classifier")
    return model


class Embedder:
    """Class probabilities and penultimate features of a trained classifier, batched."""

    def __init__(self, model: Any, batch: int = 256):
        import keras

        self._both = keras.Model(model.inputs, [model.output, model.get_layer(FEATURES_LAYER).output])
        self.batch = batch

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        probs, feats = [], []
        for start in range(0, len(images), self.batch):
            x = tf.convert_to_tensor(images[start:start + self.batch, ..., None], tf.uint8)
            logits, features = self._both(tf.cast(x, tf.float32), training=False)
            probs.append(tf.nn.softmax(logits).numpy())
            feats.append(features.numpy())
        if not probs:
            return np.zeros((0, 0), np.float32), np.zeros((0, 64), np.float32)
        return np.concatenate(probs), np.concatenate(feats).astype(np.float64)


def accuracy_per_class(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> list[float | None]:
    """Recall of each class: the share of its images the classifier puts in it (None without images)."""
    predicted = probs.argmax(axis=1)
    return [float((predicted[labels == c] == c).mean()) if (labels == c).any() else None for c in range(n_classes)]


def auc_one_vs_rest(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> list[float | None]:
    """ROC AUC of each class's score against all others (Mann-Whitney U with tied ranks averaged)."""
    from scipy.stats import rankdata

    aucs: list[float | None] = []
    for c in range(n_classes):
        positive = labels == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            aucs.append(None)
            continue
        ranks = rankdata(probs[:, c])
        aucs.append(float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return aucs


def data_fingerprint(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    """Hash of the labels, class names and (a regular subsample of) the training images."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(classes)).encode())
    digest.update(np.ascontiguousarray(labels, dtype=np.int32).tobytes())
    stride = max(1, len(images) // 2000)
    digest.update(np.ascontiguousarray(images[::stride]).tobytes())
    digest.update(str(images.shape).encode())
    return digest.hexdigest()


def evaluator_path(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                   config: ClassifierConfig) -> Path:
    """Where `cached_classifier` keeps the evaluator of these images and settings (the file may not exist)."""
    settings = json.dumps({**asdict(config), "architecture": ARCHITECTURE_VERSION}, sort_keys=True)
    key = hashlib.sha256((data_fingerprint(images, labels, classes) + settings).encode())
    return Path(folder) / f"evaluator_{key.hexdigest()[:16]}.keras"


def cached_classifier(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                      config: ClassifierConfig, job: Job | None = None,
                      progress: tuple[int, int] | None = None) -> tuple[Any, bool]:
    """Load the evaluator trained on exactly these images and settings, or train and save it.

    Returns (model, was_cached). The file is the classifier we wrote ourselves, loaded with safe_mode.
    """
    import keras

    path = evaluator_path(folder, images, labels, classes, config)
    if path.is_file():
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True), True
        except Exception:  # noqa: BLE001 - a damaged cache file is retrained, not trusted
            path.unlink(missing_ok=True)
    model = train_classifier(images, labels, len(classes), config, job, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _save_whole(model, path):
        (job or Job()).log(f"{path}: the judge was not cached (its temporary file was removed while it was being "
                           f"saved); the next job that needs it trains it again")
    return model, False


def _save_whole(model: Any, path: Path) -> bool:
    """Save `model` at `path` through a temporary of this process and attempt only, then `os.replace` it in.

    Several processes save judges into one RUN/evaluation: `evaluate` and `augment-bench` under the
    folder's lock, export's screening and the live quality of training without it. With a temporary of
    their own, two savers of the same judge never write one file, and the final file is always one of
    their whole files (the rename is atomic). The name still matches `.*.tmp.keras`
    (`core.cleanup.EVALUATION_LEFTOVERS`), so an evaluation starting meanwhile may remove it as a killed
    job's leftover: then the rename finds nothing, the cache is skipped (False) and the trained model
    in memory is used as it is."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except FileNotFoundError:  # the temporary (or the folder) was removed by another process meanwhile
        tmp.unlink(missing_ok=True)
        return False
    except BaseException:  # a full disk: no half-written model is left behind
        tmp.unlink(missing_ok=True)
        raise
    return True
