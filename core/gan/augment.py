"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real AND fake images before D.

With a few hundred images per class, D memorises the real set; augmenting both sides keeps it honest
without leaking augmentations into G's output. All randomness is stateless and drawn from a seed
tensor, so a step is a pure function of (weights, batch, seed) and a resumed run repeats it exactly.
Images are NHWC in [-1, 1].
"""
from __future__ import annotations

import tensorflow as tf


def _color(x, seed):
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    n = tf.shape(x)[0]
    brightness = tf.random.stateless_uniform([n, 1, 1, 1], s1, -0.25, 0.25, dtype=x.dtype)
    contrast = tf.random.stateless_uniform([n, 1, 1, 1], s2, 0.6, 1.4, dtype=x.dtype)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * contrast + mean + brightness


def _translation(x, seed, ratio=0.125):
    """Shift by up to `ratio` of the side, filling with -1 (black, the usual X-ray border)."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    shift_y, shift_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = tf.random.stateless_uniform([n, 1], s1, -shift_y, shift_y + 1, dtype=tf.int32)
    tx = tf.random.stateless_uniform([n, 1], s2, -shift_x, shift_x + 1, dtype=tf.int32)
    rows = tf.clip_by_value(tf.range(h)[None, :] + ty + 1, 0, h + 1)
    cols = tf.clip_by_value(tf.range(w)[None, :] + tx + 1, 0, w + 1)
    padded = tf.pad(x + 1.0, [[0, 0], [1, 1], [1, 1], [0, 0]]) - 1.0
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def _cutout(x, seed, ratio=0.5):
    """Set one random square of side `ratio * size` per image to 0 (mid grey)."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = tf.random.stateless_uniform([n, 1, 1], s1, 0, h + (1 - ch % 2), dtype=tf.int32)
    cx = tf.random.stateless_uniform([n, 1, 1], s2, 0, w + (1 - cw % 2), dtype=tf.int32)
    yy = tf.range(h)[None, :, None]
    xx = tf.range(w)[None, None, :]
    inside = (tf.abs(yy - cy) < ch // 2) & (tf.abs(xx - cx) < cw // 2)
    return x * tf.cast(~inside, x.dtype)[..., None]


_FUNCTIONS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x, policies: tuple[str, ...], seed, probability=None):
    """Apply each policy in order with its own stateless seed split from `seed` (int32/int64 shape (2,)).

    `probability` (a scalar tensor, or None for always): each policy is applied to each image
    independently with this probability, as ADA does (Karras et al. 2020), so the strength of the
    augmentation can follow how much the discriminator overfits.
    """
    if not policies:
        return x
    seeds = tf.random.experimental.stateless_split(seed, 2 * len(policies))
    for i, name in enumerate(policies):
        augmented = _FUNCTIONS[name](x, seeds[2 * i])
        if probability is None:
            x = augmented
        else:
            chosen = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seeds[2 * i + 1]) < probability
            x = tf.where(chosen, augmented, x)
    return x
