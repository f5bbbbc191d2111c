"""The measures on samples whose answer is known: PRDC, Fréchet distance, KID, MS-SSIM, nearest images."""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.measures import (frechet_distance, kernel_inception_distance, kth_neighbour_radii,
                                      mean_pairwise_ms_ssim, memorisation_ratios, ms_ssim, ms_ssim_scales,
                                      nearest_distances, pixel_vectors, prdc)
from tests.test_generate import toy_real_data


def test_prdc_coverage_is_near_one_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    values = prdc(real, fake, k=5)
    assert values["coverage"] > 0.9
    assert 0.8 < values["density"] < 1.2
    assert values["precision"] > 0.6 and values["recall"] > 0.6


def test_prdc_is_near_zero_for_disjoint_samples():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(500, 8)), rng.normal(size=(500, 8)) + 10.0
    values = prdc(real, fake, k=5)
    assert values == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_tells_a_collapsed_generator_by_its_coverage_not_its_precision():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(800, 4))
    collapsed = rng.normal(scale=0.05, size=(800, 4))  # every image near the mean of the real ones
    values = prdc(real, collapsed, k=5)
    assert values["precision"] > 0.9 and values["coverage"] < 0.1


def test_prdc_needs_more_samples_than_k():
    assert prdc(np.zeros((5, 2)), np.zeros((10, 2)), k=5) is None


def test_the_kth_neighbour_radius_skips_the_point_itself():
    points = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert list(kth_neighbour_radii(points, 1)) == [1.0, 1.0, 2.0, 3.0]
    assert list(kth_neighbour_radii(points, 2)) == [3.0, 2.0, 3.0, 5.0]


def test_frechet_distance_is_zero_for_the_same_features_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near, far = frechet_distance(a, a + 0.5), frechet_distance(a, a + 2.0)
    assert near == pytest.approx(8 * 0.25, rel=1e-3) and far == pytest.approx(8 * 4.0, rel=1e-3)
    assert frechet_distance(a[:1], a) is None


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    assert abs(kernel_inception_distance(a, b)) < 0.05
    assert kernel_inception_distance(a, b + 1.0) > 0.5


def test_ms_ssim_uses_fewer_scales_on_small_images_and_is_one_for_identical_pairs():
    assert [ms_ssim_scales(s) for s in (32, 64, 128, 256, 1024)] == [2, 3, 4, 5, 5]
    images, _, _ = toy_real_data(per_class=4, size=64)
    assert ms_ssim(images[:3], images[:3]) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_ms_ssim(np.repeat(images[:1], 5, axis=0), 10, 0) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_ms_ssim(images, 20, 0) < 0.99


def test_nearest_distance_finds_the_exact_copy_and_the_copy_ratio_is_zero_only_for_copies():
    images, _, _ = toy_real_data(per_class=5, size=64)
    vectors = pixel_vectors(images)
    assert vectors.shape == (15, 32 * 32)
    distance, index = nearest_distances(vectors[[7, 2]], vectors)
    assert list(index) == [7, 2] and distance.max() < 1e-3
    _, index = nearest_distances(vectors[[7, 2]], vectors, exclude=np.array([7, 2]))
    assert 7 not in index and 2 not in index
    _, _, ratio = memorisation_ratios(vectors[[7]], vectors[8:])
    _, _, copy_ratio = memorisation_ratios(vectors[[9]], vectors[8:])
    assert copy_ratio[0] < 0.01 and ratio[0] > 0.5
