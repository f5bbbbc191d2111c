"""The judge cache in RUN/evaluation survives other processes: each save goes through a temporary of its
own (still matched by the evaluation's leftover patterns), a cleanup that removes it mid-save costs only
the cache, and two savers of the same judge both finish with one whole file in place."""
from __future__ import annotations

import fnmatch
import os

import numpy as np
import pytest

from core.cleanup import EVALUATION_LEFTOVERS, remove_leftovers
from core.evaluation.classifier import ClassifierConfig, cached_classifier
from core.jobs import Job

CLASSES = ["Mass", "Nodule"]
CONFIG = ClassifierConfig(steps=2, batch=8)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(24, 16, 16), dtype=np.uint8), np.arange(24) % 2


@pytest.fixture
def saves(monkeypatch):
    """Every path keras.Model.save writes to; `saves.then(action)` runs action(path) after the next save."""
    import keras

    original = keras.Model.save

    class Saves(list):
        after: list = []

        def then(self, action):
            self.after.append(action)

    recorded = Saves()

    def save(model, filepath, *args, **kwargs):
        original(model, filepath, *args, **kwargs)
        recorded.append(filepath)
        if recorded.after:
            recorded.after.pop(0)(filepath)

    monkeypatch.setattr(keras.Model, "save", save)
    return recorded


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_each_save_has_a_temporary_of_its_own_that_the_leftover_patterns_match(tmp_path, data, saves):
    for attempt in ("a", "b"):
        model, cached = cached_classifier(tmp_path / attempt, *data, CLASSES, CONFIG)
        assert not cached and len(list((tmp_path / attempt).glob("evaluator_*.keras"))) == 1
        assert _leftovers(tmp_path / attempt) == []
    first, second = (os.path.basename(path) for path in saves)
    assert first != second                                      # same judge, two attempts: two names
    assert f".{os.getpid()}-" in first and first.endswith(".tmp.keras")
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in EVALUATION_LEFTOVERS) for name in (first, second))


def test_a_cleanup_removing_the_temporary_mid_save_costs_the_cache_not_the_job(tmp_path, data, saves):
    removed = []
    saves.then(lambda path: removed.extend(remove_leftovers(tmp_path, EVALUATION_LEFTOVERS)))
    logged = []
    model, cached = cached_classifier(tmp_path, *data, CLASSES, CONFIG, Job(on_event=lambda kind, text: logged.append(text)))
    assert [path.name for path in removed] == [os.path.basename(saves[0])]   # the live temporary was taken
    assert not cached and model.predict(data[0][:3, ..., None], verbose=0).shape == (3, 2)
    assert os.listdir(tmp_path) == []                           # neither a final file nor a temporary
    assert any("was not cached" in str(text) for text in logged)
    _, cached = cached_classifier(tmp_path, *data, CLASSES, CONFIG)
    assert not cached and len(os.listdir(tmp_path)) == 1        # the next job trains and caches it


def test_a_second_saver_of_the_same_judge_mid_save_leaves_one_whole_file(tmp_path, data, saves):
    import keras

    second = {}

    def another_process_saves_the_same_judge(path):
        second["result"] = cached_classifier(tmp_path, *data, CLASSES, CONFIG)

    saves.then(another_process_saves_the_same_judge)
    model, cached = cached_classifier(tmp_path, *data, CLASSES, CONFIG)
    other, other_cached = second["result"]
    assert not cached and not other_cached                      # both trained (neither found a file) and finished
    assert len(saves) == 2 and saves[0] != saves[1]
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("evaluator_")     # no temporary left, one final file
    loaded = keras.saving.load_model(tmp_path / files[0], compile=False, safe_mode=True)
    x = data[0][:4, ..., None].astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    _, cached = cached_classifier(tmp_path, *data, CLASSES, CONFIG)
    assert cached
