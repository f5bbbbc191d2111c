"""Screening with a weak generator: progress counts candidates tried against the cap, Stop is seen within
a chunk, and a cap reached with too few usable images stops with one clear line. Stand-ins only (no
TensorFlow): a source of blank images and a screen whose verdicts the test sets."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.recipe import CHUNK, Recipe, draw
from core.jobs import Cancelled, Job

STRICT = Recipe("strict", min_confidence=0.5, reject_copies=True, max_tries=50)


class Source:
    """Blank 8 px images in batches of 64; records the size of every request and of every batch made."""

    classes = ["a", "b"]

    def __init__(self, on_batch=None):
        self.requests, self.batches = [], 0
        self.on_batch = on_batch or (lambda: None)

    def iter_batches(self, labels, seeds, truncation=1.0):
        self.requests.append(len(labels))
        for start in range(0, len(labels), 64):
            self.batches += 1
            self.on_batch()
            yield np.zeros((len(labels[start:start + 64]), 8, 8), np.uint8)


class Verdicts:
    """A screen that gives every candidate the same judge confidence and copy ratio."""

    copy_threshold = 0.3

    def __init__(self, confidence: float, ratio: float):
        self.confidence, self.ratio = confidence, ratio

    def score(self, images, labels):
        return np.full(len(images), self.confidence), np.full(len(images), self.ratio), np.zeros((len(images), 2))


def test_a_weak_generator_shows_candidates_tried_against_the_cap_not_a_stalled_count():
    reports = []
    job = Job(on_progress=reports.append, min_interval=0)
    drawn = draw(Source(), {1: 10}, seed=0, recipe=STRICT, screen=Verdicts(confidence=0.1, ratio=1.0), job=job)
    assert drawn.stats["b"] == {"wanted": 10, "candidates": 512, "passed": 0, "below_bar": 10}
    during = [r for r in reports if "candidates (cap" in r.message]  # chunks of 64 until the cap is passed
    assert [r.done for r in during] == [1, 2, 3, 5, 6, 7, 8, 10]  # 10 wanted x 64/500, 128/500, ...
    assert during[2].message == "drawing b: 0 of 10 accepted after 192 candidates (cap 500)"
    assert all(r.total == 10 for r in reports) and reports[-1].done == 10


def test_progress_stays_within_the_span_the_caller_gives_and_a_class_that_fills_early_jumps_to_its_end():
    reports = []
    job = Job(on_progress=reports.append, min_interval=0)
    draw(Source(), {0: 4, 1: 6}, seed=0, recipe=STRICT, screen=Verdicts(confidence=0.9, ratio=1.0), job=job,
         progress=(100, 300))
    assert [r.done for r in reports] == [101, 104, 105, 110]  # one chunk of 64 fills each class: 4 x 64/200, 4
    assert all(r.total == 300 for r in reports)


def test_stop_is_seen_between_the_batches_of_a_large_chunk():
    job = Job()
    source = Source(on_batch=job.request_stop)
    with pytest.raises(Cancelled):
        draw(source, {0: 1000}, seed=0, recipe=STRICT, screen=Verdicts(confidence=0.9, ratio=1.0), job=job)
    assert source.requests == [CHUNK] and source.batches == 1, "generated the whole chunk before seeing Stop"


def test_large_requests_are_drawn_in_chunks_screened_or_not():
    source = Source()
    drawn = draw(source, {0: 1000}, seed=0, recipe=Recipe("none"))
    assert len(drawn.seeds) == 1000 and max(source.requests) <= CHUNK and sum(source.requests) == 1000
    source = Source()
    draw(source, {0: 1000}, seed=0, recipe=STRICT, screen=Verdicts(confidence=0.9, ratio=1.0))
    assert max(source.requests) <= CHUNK


def test_a_cap_reached_with_too_few_usable_images_stops_with_one_line_naming_the_class_and_the_cap():
    few_tries = Recipe("strict", min_confidence=0.5, reject_copies=True, max_tries=3)
    with pytest.raises(UserError) as error:
        draw(Source(), {1: 20}, seed=0, recipe=few_tries, screen=Verdicts(confidence=0.9, ratio=0.0))
    message = str(error.value)
    assert message.startswith("b: the cap of 60 candidates (3 per wanted image) was reached with only 0 of the "
                              "20 images asked") and "near-copies" in message and "\n" not in message
