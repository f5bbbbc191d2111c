"""Live quality: each training sample grid is judged per class by the run's judge classifier."""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation import live_quality
from core.evaluation.live_quality import LiveQuality, QualityJob, grid_tiles, quality_text
from core.gan.trainer import SAMPLE_COLUMNS, SampleGrid
from core.jobs import Job
from core.labels import DEFAULT_CLASSES
from core.render import sample_grid
from tests.test_generate import TOY_CLASSES
from tests.toy_sources import imbalanced_toy_data, write_toy_cache

SIZE = 32


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A prepared cache of three easily told toy classes, and its held-out images."""
    real = imbalanced_toy_data(train_counts=(30, 30, 30), test_per_class=SAMPLE_COLUMNS, size=SIZE)
    cache = write_toy_cache(tmp_path_factory.mktemp("live") / "cache", real)
    return cache, real


@pytest.fixture(autouse=True)
def small_judge(monkeypatch):
    from core.evaluation.classifier import ClassifierConfig

    monkeypatch.setattr(live_quality, "JUDGE", ClassifierConfig(steps=120))


def _grid(real, rows_of_class) -> np.ndarray:
    """A sample grid whose row r holds SAMPLE_COLUMNS held-out images of class rows_of_class[r]."""
    test_x, test_y = real.held_out()
    tiles = [test_x[test_y == c][:SAMPLE_COLUMNS] for c in rows_of_class]
    images = np.concatenate(tiles).astype(np.float32)[..., None] / 127.5 - 1.0
    return sample_grid(images, TOY_CLASSES)


def test_grid_tiles_gives_back_every_tile_of_a_sample_grid_with_its_class():
    rng = np.random.default_rng(0)
    classes = list(DEFAULT_CLASSES)     # long names: the margin is wider than a tile
    images = rng.integers(0, 256, (len(classes) * SAMPLE_COLUMNS, SIZE, SIZE)).astype(np.uint8)
    grid = sample_grid(images[..., None].astype(np.float32) / 127.5 - 1.0, classes)
    assert grid.shape[1] - SAMPLE_COLUMNS * SIZE > SIZE
    tiles, labels = grid_tiles(grid, len(classes), SIZE, SAMPLE_COLUMNS)
    assert np.abs(tiles.astype(int) - images).max() <= 1       # float round trip
    assert labels.tolist() == np.repeat(np.arange(len(classes)), SAMPLE_COLUMNS).tolist()
    with pytest.raises(ValueError, match="rows"):
        grid_tiles(grid[:-1], len(classes), SIZE, SAMPLE_COLUMNS)


@pytest.mark.slow
def test_rows_that_show_their_class_score_high_and_rows_of_another_class_low(toy, tmp_path):
    cache, real = toy
    logged = []
    quality = LiveQuality(TOY_CLASSES, SIZE, SAMPLE_COLUMNS, log=logged.append)
    faithful, shifted = _grid(real, [0, 1, 2]), _grid(real, [1, 2, 0])
    assert quality.observe(10, faithful, tmp_path / "run", str(cache)) == []     # the judge is still training
    quality.wait_for_judge()
    events = quality.observe(20, shifted, tmp_path / "run", str(cache))
    assert [e["step"] for e in events] == [10, 20]                            # the waiting grid comes first
    good, bad = events
    assert set(good["per_class"]) == set(TOY_CLASSES) and good["chance"] == pytest.approx(1 / 3, abs=1e-3)
    assert good["judge_accuracy"] >= 0.8
    assert good["overall"] >= 0.8 and bad["overall"] <= 0.2
    assert list((tmp_path / "run" / "evaluation").glob("evaluator_*.keras"))   # kept for evaluate and export
    assert any("judge trained" in line for line in logged)
    assert "weakest" in quality_text(bad) and "step 20" in quality_text(bad)

    again = LiveQuality(TOY_CLASSES, SIZE, SAMPLE_COLUMNS, log=logged.append)
    again.observe(30, faithful, tmp_path / "run", str(cache))
    again.wait_for_judge()
    assert again.judge_cached and again.observe(40, faithful, tmp_path / "run", str(cache))[0]["step"] == 30


@pytest.mark.slow
def test_the_training_job_passes_everything_through_and_adds_quality_after_samples(toy, tmp_path):
    from core.gan.config import TrainConfig

    cache, real = toy
    seen = []
    parent = Job(on_event=lambda kind, payload: seen.append((kind, payload)))
    config = TrainConfig(run=str(tmp_path / "run"), data=str(cache), classes=list(TOY_CLASSES), size=SIZE)
    watched = QualityJob(parent, config, SAMPLE_COLUMNS)
    grid = _grid(real, [0, 1, 2])
    watched.emit("metrics", {"step": 1})
    watched.emit("samples", SampleGrid(5, grid, tmp_path / "run" / "samples" / "step_0000005.png"))
    watched.quality.wait_for_judge()
    watched.emit("samples", SampleGrid(9, grid, tmp_path / "run" / "samples" / "step_0000009.png"))
    watched.close()
    kinds = [kind for kind, _ in seen]
    assert kinds[:2] == ["metrics", "samples"] and kinds.count("samples") == 2
    quality = [payload for kind, payload in seen if kind == "quality"]
    assert [q["step"] for q in quality] == [5, 9]
    assert kinds.index("quality") > kinds.index("samples", 2)                 # after the grid that made it ready
    assert sum("quality at step" in str(p) for k, p in seen if k == "log") == 2
    watched.request_stop()
    assert parent.stop_requested

    seen.clear()    # a run that ends while its last grid waits for the judge: judged on closing
    last = QualityJob(Job(on_event=lambda kind, payload: seen.append((kind, payload))), config, SAMPLE_COLUMNS)
    last.emit("samples", SampleGrid(11, grid, tmp_path / "run" / "samples" / "step_0000011.png"))
    last.quality.wait_for_judge()
    assert not any(kind == "quality" for kind, _ in seen)
    last.close()
    assert [payload["step"] for kind, payload in seen if kind == "quality"] == [11]


@pytest.mark.slow
def test_a_judge_that_cannot_be_built_turns_live_quality_off_in_one_line(toy, tmp_path):
    cache, real = toy
    logged = []
    quality = LiveQuality(["No Finding", "Mass", "Nodule"], SIZE, SAMPLE_COLUMNS, log=logged.append)
    grid = _grid(real, [0, 1, 2])
    assert quality.observe(1, grid, tmp_path / "run", str(cache)) == []
    quality.wait_for_judge()
    assert quality.observe(2, grid, tmp_path / "run", str(cache)) == []
    assert quality.failed and len(logged) == 1 and "live quality is off" in logged[0] and "Nodule" in logged[0]


@pytest.mark.slow
def test_the_judge_trains_in_a_process_of_its_own_and_its_death_or_a_stop_costs_one_line(toy, tmp_path):
    """It once trained in a thread of the training process: TensorFlow run from two threads corrupted
    memory (runs died at their first sample grid) and the judge's seeding reseeded the training process."""
    cache, real = toy
    grid = _grid(real, [0, 1, 2])
    np.random.seed(1234)
    before = np.random.get_state()[1].copy()
    logged = []
    quality = LiveQuality(TOY_CLASSES, SIZE, SAMPLE_COLUMNS, log=logged.append)
    quality.observe(1, grid, tmp_path / "run", str(cache))
    quality.wait_for_judge()
    assert not quality.failed and quality.judge_seconds is not None
    assert np.array_equal(np.random.get_state()[1], before)        # this process's generators untouched

    dead = LiveQuality(TOY_CLASSES, SIZE, SAMPLE_COLUMNS, log=logged.append)
    dead.observe(1, grid, tmp_path / "dead", str(cache))
    dead._process.kill()                                            # as the OOM killer would
    dead.wait_for_judge()
    assert dead.failed and "ended unexpectedly" in logged[-1] and dead.observe(2, grid, tmp_path / "dead",
                                                                                str(cache)) == []

    stopped = LiveQuality(TOY_CLASSES, SIZE, SAMPLE_COLUMNS, log=logged.append)
    stopped.observe(1, grid, tmp_path / "stopped", str(cache))
    process = stopped._process
    stopped.close()                                                 # the run ended while its judge trained
    assert not process.is_alive() and not list((tmp_path / "stopped" / "evaluation").glob("evaluator_*.keras"))
