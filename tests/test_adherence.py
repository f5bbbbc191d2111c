"""Class adherence of a trained generator: does it draw the finding it is asked for, class by class?

A tiny sngan learns three toy classes that differ only by a small finding (a 4 px spot, placed at random in
one half of the image, or none), as small relative to the image as a nodule is at 64 px. An independent
judge, trained on other images of the same kind, then classifies the generator's images: every class must
be recognised well above chance (1/3), so a class the generator ignores fails the test by name.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.classifier import ClassifierConfig, Embedder, train_classifier
from core.export.generator import load_generator
from core.gan.batches import TrainingData
from core.gan.config import TrainConfig
from core.gan.trainer import train

CLASSES = ["No Finding", "Nodule", "Mass"]
SIZE = 32


def spot_images(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32): a noisy grey body; 'Nodule' has a bright 4 px spot in the left half, 'Mass' in the
    right half, 'No Finding' none. The spot's place varies, so the generator must draw it, not copy one image."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(len(CLASSES)):
        for _ in range(per_class):
            image = np.full((SIZE, SIZE), 40.0)
            image[4:-4, 5:-5] = 110.0
            image += rng.normal(0, 12, (SIZE, SIZE))
            if label:
                row = int(rng.integers(7, SIZE - 11))
                col = int(rng.integers(6, SIZE // 2 - 5)) + (SIZE // 2 - 1 if label == 2 else 0)
                image[row:row + 4, col:col + 4] = 230.0
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, np.int32)


@pytest.mark.slow
def test_a_tiny_trained_generator_draws_every_class_well_above_chance(tmp_path):
    images, labels = spot_images(48, seed=0)
    # the default model (class guide and mode seeking on), its guide warmed up for 300 steps, not 2000: these
    # spots take the guide far fewer, and the default warm-up alone cost this test a minute
    config = TrainConfig(run=str(tmp_path / "run"), size=SIZE, batch=16, steps=300, guide_steps=300, channels=8,
                         latent_dim=16, log_every=100, checkpoint_every=1000, seed=0, classes=CLASSES)
    train(config, data=TrainingData(images, labels, CLASSES, source="spots"))

    judge_x, judge_y = spot_images(60, seed=1)
    judge = Embedder(train_classifier(judge_x, judge_y, len(CLASSES), ClassifierConfig(steps=150, batch=32)))
    held_x, held_y = spot_images(20, seed=2)
    assert (judge(held_x)[0].argmax(1) == held_y).mean() >= 0.9           # the judge itself knows the classes

    asked = np.repeat(np.arange(len(CLASSES), dtype=np.int32), 40)
    drawn = load_generator(tmp_path / "run").generate(asked, list(range(len(asked))))
    hits = judge(drawn)[0].argmax(1) == asked
    adherence = {name: float(hits[asked == k].mean()) for k, name in enumerate(CLASSES)}
    assert min(adherence.values()) >= 0.6, adherence
