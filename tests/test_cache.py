"""The prepared cache: what it selects, what it stores, when it is reused, and how it fails."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.data.cache import CacheError, PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset
from core.data.images import load_image
from core.jobs import Cancelled, Job
from core.labels import DEFAULT_CLASSES, split_labels
from core.data.phantoms import write_demo_dataset


@pytest.fixture(scope="module")
def demo_cache(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c64"
    return prepare(PrepareConfig(data=str(demo_root), out=str(out), size=64)), PreparedCache.open(out)


@pytest.fixture
def small_root(tmp_path) -> Path:
    """A private dataset the test may damage."""
    return write_demo_dataset(tmp_path / "nih", per_class=3, size=64, seed=1)


def test_by_default_only_images_labelled_exactly_one_class_are_prepared(demo_cache):
    result, cache = demo_cache
    assert result.prepared == len(cache) == 7 * 12 and not result.failed and not result.reused
    assert result.per_class == {name: 12 for name in DEFAULT_CLASSES}
    assert cache.images.shape == (84, 64, 64) and cache.images.dtype == np.uint8
    assert cache.classes == list(DEFAULT_CLASSES) and cache.size == 64
    assert [split_labels(text) for text in cache.meta["finding_labels"]] == \
        [[cache.classes[label]] for label in cache.labels]


def test_cached_pixels_are_the_letterboxed_source_images(demo_root, demo_cache):
    _, cache = demo_cache
    paths = open_dataset(demo_root).table.set_index("image")["path"]
    for row in (0, 41, 83):
        expected = load_image(paths[cache.meta["image"][row]], 64)
        assert np.array_equal(cache.images[row], expected)


def test_split_is_the_datasets_patient_split(demo_root, demo_cache):
    _, cache = demo_cache
    table = open_dataset(demo_root).table.set_index("image")
    assert list(cache.split) == list(table.loc[cache.meta["image"], "split"])
    assert set(cache.split) == {"train", "val", "test"}
    splits_per_patient = cache.meta.assign(split=cache.split).groupby("patient_id")["split"].nunique()
    assert splits_per_patient.max() == 1


def test_rarest_rule_adds_multi_label_images_to_their_rarest_class(demo_root, tmp_path):
    config = PrepareConfig(data=str(demo_root), out=str(tmp_path / "c"), size=32, multi_label="rarest")
    result = prepare(config)
    cache = PreparedCache.open(tmp_path / "c")
    carriers = open_dataset(demo_root).label_counts()
    multi = [(split_labels(text), label) for text, label in zip(cache.meta["finding_labels"], cache.labels)
             if "|" in text]
    assert multi and result.prepared == 84 + len(multi)
    for labels, label in multi:
        assert cache.classes[label] == min(labels, key=lambda name: (carriers[name], cache.classes.index(name)))


def test_images_with_a_label_outside_the_classes_are_never_used(demo_root, tmp_path):
    result = prepare(PrepareConfig(data=str(demo_root), out=str(tmp_path / "c"), size=32,
                                   classes=("Effusion", "Infiltration"), multi_label="rarest"))
    cache = PreparedCache.open(tmp_path / "c")
    assert all(set(split_labels(text)) <= {"Effusion", "Infiltration"} for text in cache.meta["finding_labels"])
    assert result.per_class["Effusion"] >= 12 and result.per_class["Infiltration"] >= 12


def test_same_inputs_reuse_the_cache_and_changed_inputs_rebuild_it(small_root, tmp_path):
    config = PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=32)
    assert not prepare(config).reused
    assert prepare(config).reused
    bigger = PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=48)
    assert not prepare(bigger).reused
    assert PreparedCache.open(tmp_path / "c").size == 48
    image = next(small_root.glob("images_*/images/*.png"))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not prepare(bigger).reused


def test_a_corrupt_png_is_skipped_listed_and_counted(small_root, tmp_path):
    victim = sorted(small_root.glob("images_*/images/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    config = PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=32, multi_label="rarest")
    result = prepare(config)
    cache = PreparedCache.open(tmp_path / "c")
    assert [name for name, _ in result.failed] == [victim.name]
    assert victim.name in result.failed[0][1]
    assert victim.name not in set(cache.meta["image"]) and len(cache) == result.prepared == len(cache.images)
    assert (tmp_path / "c" / "failed.txt").read_text().startswith(victim.name + "\t")
    assert prepare(config).failed == result.failed


def test_a_cancelled_prepare_leaves_no_partial_cache_and_keeps_the_old_one(small_root, tmp_path):
    out = tmp_path / "c"
    job = Job(on_progress=lambda progress: job.request_stop())  # stops once decoding has begun
    with pytest.raises(Cancelled):
        prepare(PrepareConfig(data=str(small_root), out=str(out), size=32), job=job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nih"]

    prepare(PrepareConfig(data=str(small_root), out=str(out), size=32))
    with pytest.raises(Cancelled):
        prepare(PrepareConfig(data=str(small_root), out=str(out), size=48), job=job)
    assert PreparedCache.open(out).size == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "nih"]


def test_a_folder_holding_other_files_is_never_used_as_cache(small_root, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(CacheError, match="not a prepared cache"):
        prepare(PrepareConfig(data=str(small_root), out=str(tmp_path / "mine"), size=32))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("classes, message", [
    (("Mass", "Bogus"), "unknown label"),
    (("Mass", "Hernia"), "no images of Hernia"),
    (("Mass", "Mass"), "each once"),
])
def test_bad_class_lists_are_rejected_naming_the_option(small_root, tmp_path, classes, message):
    with pytest.raises(CacheError, match=message) as caught:
        prepare(PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), classes=classes, size=32))
    assert "--classes" in str(caught.value)


def test_opening_a_folder_that_is_not_a_cache_says_so(tmp_path):
    with pytest.raises(CacheError, match="not a prepared cache"):
        PreparedCache.open(tmp_path)


def test_finding_labels_corrected_in_the_app_are_what_the_cache_learns(small_root, tmp_path):
    from core.data.annotations import open_store

    index = open_dataset(small_root)
    image = index.table.loc[index.table["finding_labels"] == "Mass", "image"].iloc[0]
    first = prepare(PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=32))
    open_store(index, user_data_dir=tmp_path / "user").set_finding_labels(image, ["Nodule"])

    second = prepare(PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=32))
    meta = PreparedCache.open(tmp_path / "c").meta.set_index("image")
    assert not second.reused, "an edited label must rebuild the cache"
    assert meta.loc[image, "class"] == "Nodule"
    assert second.per_class["Mass"] == first.per_class["Mass"] - 1
    assert second.per_class["Nodule"] == first.per_class["Nodule"] + 1


def test_prepare_creates_nothing_in_a_dataset_without_edits(small_root, tmp_path):
    before = sorted(p.name for p in small_root.iterdir())
    prepare(PrepareConfig(data=str(small_root), out=str(tmp_path / "c"), size=32))
    assert sorted(p.name for p in small_root.iterdir()) == before
