"""The recipe's screening: the judge's confidence in the conditioned class, and no near-copies."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.recipe import RECIPES, Recipe, Screen, candidate_seeds, draw
from tests.test_generate import TOY_CLASSES, toy_real_data, write_toy_run



@pytest.fixture(scope="module")
def screen():
    from core.evaluation.classifier import ClassifierConfig, Embedder, train_classifier

    images, labels, split = toy_real_data(per_class=30, size=32, seed=3)
    train = split == "train"
    model = train_classifier(images[train], labels[train], 3, ClassifierConfig(steps=80))
    return Screen(Embedder(model), images[train], images[split == "test"])


def test_candidate_seeds_are_a_fixed_stream_per_seed_and_class():
    assert list(candidate_seeds(0, 1, 0, 5))[2:] == list(candidate_seeds(0, 1, 2, 3))
    assert not np.array_equal(candidate_seeds(0, 1, 0, 5), candidate_seeds(0, 2, 0, 5))


def test_plain_drawing_takes_the_first_candidates(tmp_path):
    from core.export.generator import load_generator

    generator = load_generator(write_toy_run(tmp_path / "run"))
    drawn = draw(generator, {1: 4, 2: 2}, seed=0, recipe=RECIPES["none"])
    assert list(drawn.labels) == [1, 1, 1, 1, 2, 2]
    assert list(drawn.seeds[:4]) == list(candidate_seeds(0, 1, 0, 4))
    np.testing.assert_array_equal(drawn.images[:4], generator.generate([1] * 4, candidate_seeds(0, 1, 0, 4)))


@pytest.mark.slow
def test_the_screen_keeps_clear_images_and_marks_a_class_the_generator_cannot_draw(tmp_path, screen):
    from core.export.generator import load_generator

    strict = Recipe("strict", min_confidence=0.5, reject_copies=True, max_tries=3)
    follows = load_generator(write_toy_run(tmp_path / "follows", "follows"))
    drawn = draw(follows, {0: 5, 1: 5}, seed=0, recipe=strict, screen=screen)
    assert drawn.stats["Mass"] == {"wanted": 5, "candidates": 64, "passed": 5, "below_bar": 0}
    mislabels = load_generator(write_toy_run(tmp_path / "mislabels", "mislabels"))
    drawn = draw(mislabels, {1: 5}, seed=0, recipe=strict, screen=screen)
    assert drawn.stats["Mass"]["passed"] == 0 and drawn.stats["Mass"]["below_bar"] == 5
    assert len(drawn.images) == 5  # filled with the best of the rest, and said so


@pytest.mark.slow
def test_a_generator_that_only_copies_training_images_ships_nothing(tmp_path, screen):
    from core.export.generator import load_generator

    copies = [screen_image for screen_image in _training_images_per_class()]
    generator = load_generator(write_toy_run(tmp_path / "copies", "copies", copies=copies))
    with pytest.raises(UserError, match="near-copies"):
        draw(generator, {1: 3}, seed=0, recipe=Recipe("strict", reject_copies=True, max_tries=2), screen=screen)


def _training_images_per_class():
    images, labels, split = toy_real_data(per_class=30, size=32, seed=3)
    train_x, train_y = images[split == "train"], labels[split == "train"]
    return [train_x[np.flatnonzero(train_y == c)[0]] for c in range(len(TOY_CLASSES))]


class _Counter:
    """Stand-in generator: candidate i (in request order) is an image filled with i."""

    classes = ["a", "b"]

    def __init__(self):
        self.made = 0

    def iter_batches(self, labels, seeds, truncation=1.0):
        values = np.arange(self.made, self.made + len(labels)) % 256
        self.made += len(labels)
        yield np.repeat(values, 16).reshape(len(labels), 4, 4).astype(np.uint8)


class _LookAlikes:
    """Every candidate passes; four in five look the same to the judge (features at the origin), every fifth
    differs (features at its own place)."""

    copy_threshold = 0.0

    def score(self, images, labels):
        value = images[:, 0, 0].astype(float)
        features = np.stack([np.where(value % 5 == 0, value, 0.0), np.zeros(len(images))], axis=1)
        return np.ones(len(images)), np.ones(len(images)), features


def test_spread_keeps_the_candidates_that_differ_from_a_stream_of_look_alikes():
    strict = Recipe("strict", min_confidence=0.5, reject_copies=True)
    plain = draw(_Counter(), {1: 5}, seed=0, recipe=strict, screen=_LookAlikes())
    spread = draw(_Counter(), {1: 5}, seed=0, recipe=Recipe("spread", min_confidence=0.5, reject_copies=True,
                                                             spread=4), screen=_LookAlikes())
    assert sorted(plain.images[:, 0, 0]) == [0, 1, 2, 3, 4]              # the first five that pass
    values = list(spread.images[:, 0, 0])
    assert len(values) == 5 and {5, 10, 15} <= set(values)                # the distinct ones among the 20 gathered
    assert values[:2] == [0, 15]                                          # farthest-point order: 15 is farthest from 0
    assert spread.stats["b"] == {"wanted": 5, "candidates": 64, "passed": 5, "below_bar": 0}
    np.testing.assert_array_equal(spread.seeds, candidate_seeds(0, 1, 0, 64)[values])  # each image keeps its seed
