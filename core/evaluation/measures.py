"""Measures of generated images against real ones: pure numpy (TensorFlow only for MS-SSIM).

- Fréchet distance and KID between two sets of feature vectors (the evaluator's penultimate layer);
- precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
  for Generative Models"), the algorithm of the `prdc` package written out in numpy: a real image's
  neighbourhood is the ball to its k-th nearest real neighbour. Precision: share of generated images
  inside some real ball; recall: share of real images inside some generated ball (generated radii);
  density: how many real balls hold a generated image on average, over k (about 1 when the two match);
  coverage: share of real balls that hold at least one generated image;
- MS-SSIM within a class (diversity) with as many scales as the image size allows;
- nearest training image in pixel space and the copy ratio (memorisation).
"""
from __future__ import annotations

import numpy as np

NEAREST_SIDE = 32
PRDC_K = 5
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2); None with fewer than 2 samples on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(s_a @ s_b)
    root_trace = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(mu @ mu + np.trace(s_a) + np.trace(s_b) - 2 * root_trace)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 100,
                              seed: int = 0) -> float | None:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (KID)."""
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return None
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(off - 2 * k_xy.mean())
    return float(np.mean(values))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(d2, 0, None))


def kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Each vector's distance to its k-th nearest other vector of the same set."""
    distances = pairwise_distances(features, features)
    np.fill_diagonal(distances, np.inf)
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K) -> dict[str, float] | None:
    """Precision, recall, density, coverage of `fake` against `real` features (None: too few samples)."""
    if len(real) <= k or len(fake) <= k:
        return None
    real_radii, fake_radii = kth_neighbour_radii(real, k), kth_neighbour_radii(fake, k)
    between = pairwise_distances(real, fake)  # (real, fake)
    inside_real = between < real_radii[:, None]
    return {"precision": float(inside_real.any(axis=0).mean()),
            "recall": float((between < fake_radii[None, :]).any(axis=1).mean()),
            "density": float(inside_real.sum(axis=0).mean() / k),
            "coverage": float((between.min(axis=1) < real_radii).mean())}


def ms_ssim_scales(size: int, window: int = 11) -> int:
    """Scales whose smallest image still holds the SSIM window (2 at 32 px ... 5 from 256 px)."""
    return int(max(1, min(5, np.floor(np.log2(size / window)) + 1)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM of uint8 image pairs (N, S, S), with as many scales as the size allows."""
    import tensorflow as tf

    scales = ms_ssim_scales(a.shape[1])
    weights = np.array(_MS_SSIM_WEIGHTS[:scales]) / sum(_MS_SSIM_WEIGHTS[:scales])
    x = tf.cast(tf.convert_to_tensor(a[..., None]), tf.float32)
    y = tf.cast(tf.convert_to_tensor(b[..., None]), tf.float32)
    return tf.image.ssim_multiscale(x, y, max_val=255.0, power_factors=weights.tolist()).numpy()


def mean_pairwise_ms_ssim(images: np.ndarray, pairs: int, seed: int) -> float | None:
    n = len(images)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n
    return float(np.mean(ms_ssim(images[i], images[j])))


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """Images as float32 vectors of 32x32 grey levels in 0..1, the space of the memorisation check."""
    import cv2

    if images.shape[1] != NEAREST_SIDE:
        images = np.stack([cv2.resize(im, (NEAREST_SIDE, NEAREST_SIDE), interpolation=cv2.INTER_AREA)
                           for im in images])
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def nearest_distances(query: np.ndarray, reference: np.ndarray, exclude: np.ndarray | None = None,
                      chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """RMS distance (0..1) from each query vector to its nearest reference vector, and that vector's index.

    `exclude[i]` is a reference index query i may not match (itself, when querying the reference set).
    """
    r_sq = (reference * reference).sum(1)
    dist, index = np.empty(len(query), np.float32), np.empty(len(query), np.int64)
    for start in range(0, len(query), chunk):
        block = query[start:start + chunk]
        d2 = (block * block).sum(1)[:, None] + r_sq[None, :] - 2 * block @ reference.T
        if exclude is not None:
            d2[np.arange(len(block)), exclude[start:start + chunk]] = np.inf
        index[start:start + chunk] = d2.argmin(1)
        dist[start:start + chunk] = np.sqrt(np.clip(d2.min(1), 0, None) / query.shape[1])
    return dist, index


def memorisation_ratios(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query vector: distance to the nearest training vector, its index, and that distance divided by
    the training image's own distance to its nearest other training image (~0 for a copy, ~1 for new).

    Raw distance alone is misleading: a smooth "average" image is closer to every training image than
    real images are, without copying any."""
    distance, index = nearest_distances(query, train)
    if len(train) < 2:
        return distance, index, np.ones_like(distance)
    neighbours = np.unique(index)
    own, _ = nearest_distances(train[neighbours], train, exclude=neighbours)
    spacing = np.maximum(own[np.searchsorted(neighbours, index)], 1e-6)
    return distance, index, distance / spacing
