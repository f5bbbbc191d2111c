"""Architectures: the reference exactly as the notebook, sngan shapes, custom layers that save and load safely."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.gan.layers import (ClassEmbedding, ClassProjection, ConditionalBatchNorm, GroupNorm, ModulatedBatchNorm,
                             SNConv2D, SNDense, UpConv)
from core.gan.models import build_models, reference_discriminator, reference_generator, sngan_generator


def _params(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_reference_generator_matches_the_notebook_layer_for_layer():
    g = reference_generator(n_classes=7, latent_dim=100)
    expected = (
        7 * 50                                   # Embedding(7, 50)
        + 50 * 8 * 8 * 64 + 8 * 8 * 64          # Dense(8*8*64)
        + 100 * 8 * 8 * 128 + 8 * 8 * 128       # Dense(8*8*128)
        + (4 * 4 * 192 * 128 + 128)             # first Conv2DTranspose on 128+64 channels
        + 3 * (4 * 4 * 128 * 128 + 128)         # three more
        + (16 * 16 * 128 * 1 + 1)               # Conv2D(1, 16x16)
    )
    assert _params(g) == expected
    assert g.output_shape == (None, 128, 128, 1)
    last = g.get_layer("to_image")
    assert last.kernel_size == (16, 16) and last.activation.__name__ == "tanh"


def test_reference_discriminator_matches_the_notebook_layer_for_layer():
    d = reference_discriminator(n_classes=7, size=128)
    expected = (
        7 * 50 + 50 * 128 * 128 + 128 * 128     # label -> Dense(128*128) image channel
        + (5 * 5 * 2 * 128 + 128)               # Conv2D(128, 5x5) on image + label channel
        + 3 * (5 * 5 * 128 * 128 + 128)
        + (8 * 8 * 128 + 1)                     # Dense(1, sigmoid) after Flatten
    )
    assert _params(d) == expected
    assert d.output_shape == (None, 1)
    assert any(isinstance(layer, keras.layers.Dropout) and layer.rate == 0.4 for layer in d.layers)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_sngan_shapes_for_each_resolution(size):
    g, d = build_models("sngan", n_classes=3, size=size, latent_dim=16, channels=8)
    z = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    labels = np.array([0, 2], np.int32)
    images = g([z, labels], training=False)
    assert tuple(images.shape) == (2, size, size, 1)
    assert images.dtype == "float32" and float(np.max(np.abs(images))) <= 1.0
    score, projection, logits = d([np.asarray(images), labels], training=False)
    assert tuple(score.shape) == tuple(projection.shape) == (2, 1) and tuple(logits.shape) == (2, 3)


def test_spectral_norm_bounds_the_kernel_and_lets_gradients_through():
    import tensorflow as tf

    layer = SNDense(4)
    x = tf.random.stateless_normal((8, 6), seed=[1, 2])
    layer(x, training=True)
    layer.kernel.assign(layer.kernel * 50.0)
    for _ in range(30):                           # power iteration converges over calls
        layer(x, training=True)
    w = layer.normalized_kernel(False).numpy()
    assert np.linalg.svd(w, compute_uv=False)[0] == pytest.approx(1.0, rel=0.02)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x, training=True) ** 2)
    grad = tape.gradient(y, layer.kernel)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


def test_conditional_batch_norm_shifts_by_class():
    import tensorflow as tf

    layer = ConditionalBatchNorm(2)
    x = tf.ones((2, 3, 3, 4))
    layer([x, tf.constant([0, 1])])
    layer.beta.assign(np.stack([np.zeros(4), np.full(4, 5.0)]).astype(np.float32))
    out = layer([x, tf.constant([0, 1])], training=False).numpy()
    assert out[1].mean() - out[0].mean() == pytest.approx(5.0, abs=1e-3)


def test_the_transposed_up_conv_is_nearest_upsampling_then_a_3x3_conv():
    """Same outputs, kernel gradient and input gradient as UpSampling2D + Conv2D, at the borders too (odd,
    unequal sides)."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).standard_normal((2, 5, 7, 3)), tf.float32)
    up = UpConv(4)
    up.build(x.shape)
    up.kernel.assign(np.random.default_rng(1).standard_normal((3, 3, 3, 4)).astype(np.float32))
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    conv.build((None, 10, 14, 3))
    conv.kernel.assign(up.kernel)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = up(x), conv(keras.layers.UpSampling2D(2)(x))
        weights = tf.constant(np.random.default_rng(2).standard_normal((2, 10, 14, 4)), tf.float32)
        loss_ours, loss_theirs = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
    assert ours.shape == (2, 10, 14, 4)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss_ours, up.kernel), tape.gradient(loss_theirs, conv.kernel),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(loss_ours, x), tape.gradient(loss_theirs, x), rtol=1e-5, atol=1e-4)


def test_group_norm_is_keras_group_normalization():
    """Same outputs and gradients (input, scale, centre) as keras' GroupNormalization, for images whose
    channels have unequal offsets and spreads."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((3, 6, 5, 8)) * rng.uniform(0.5, 4, 8) + rng.uniform(-3, 3, 8), tf.float32)
    ours, theirs = GroupNorm(groups=4), keras.layers.GroupNormalization(groups=4)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(rng.standard_normal(8).astype(np.float32) if layer is ours else ours.gamma)
        layer.beta.assign(rng.standard_normal(8).astype(np.float32) if layer is ours else ours.beta)
    weights = tf.constant(rng.standard_normal(x.shape), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out_ours, out_theirs = ours(x), theirs(x)
        loss_ours, loss_theirs = tf.reduce_sum(out_ours * weights), tf.reduce_sum(out_theirs * weights)
    np.testing.assert_allclose(out_ours, out_theirs, atol=1e-4)
    for a, b in [(x, x), (ours.gamma, theirs.gamma), (ours.beta, theirs.beta)]:
        np.testing.assert_allclose(tape.gradient(loss_ours, a), tape.gradient(loss_theirs, b), rtol=1e-4, atol=1e-4)


def test_modulated_batch_norm_is_batch_norm_then_the_modulation():
    """Folding the normalisation into the modulation changes rounding only: outputs and moving statistics
    equal BatchNormalization followed by `* (1 + cond @ gamma) + cond @ beta`, in training and inference."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 6, 6, 5)) * 2 + 1).astype(np.float32)
    cond = rng.standard_normal((4, 7)).astype(np.float32)
    layer = ModulatedBatchNorm()
    layer.build([x.shape, cond.shape])
    layer.gamma.assign(rng.standard_normal((7, 5)).astype(np.float32) * 0.3)
    layer.beta.assign(rng.standard_normal((7, 5)).astype(np.float32) * 0.3)
    norm = keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, epsilon=1e-5)
    norm.build(x.shape)
    gamma, beta = (cond @ layer.gamma.numpy())[:, None, None, :], (cond @ layer.beta.numpy())[:, None, None, :]
    for training in (True, False):
        expected = np.asarray(norm(x, training=training)) * (1 + gamma) + beta
        np.testing.assert_allclose(layer([x, cond], training=training), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.norm.moving_mean, norm.moving_mean, rtol=1e-6)
    np.testing.assert_allclose(layer.norm.moving_variance, norm.moving_variance, rtol=1e-6)
    assert not np.allclose(norm.moving_mean, 0.0)        # the training call did move the statistics


def test_generator_with_custom_layers_loads_with_safe_mode(tmp_path):
    g = sngan_generator(n_classes=3, size=32, latent_dim=8, channels=4)
    path = tmp_path / "g.keras"
    g.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    z = np.ones((2, 8), np.float32)
    labels = np.array([0, 1], np.int32)
    np.testing.assert_allclose(loaded([z, labels]), g([z, labels]), atol=1e-6)


def test_a_generator_saved_mid_ramp_keeps_its_condition_strength(tmp_path):
    g = sngan_generator(n_classes=3, size=32, latent_dim=8, channels=4)
    g.get_layer("class_embedding").strength.assign(0.25)
    g.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras", safe_mode=True)
    assert float(loaded.get_layer("class_embedding").strength.numpy()) == 0.25


def test_the_previous_generator_still_builds_and_loads(tmp_path):
    """Runs trained before issue 9 (z and class at the input, class-only batch norm) keep loading."""
    g = sngan_generator(n_classes=3, size=32, latent_dim=8, channels=4, latent_blocks=False)
    assert any(isinstance(layer, ConditionalBatchNorm) for layer in g.layers)
    g.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras", safe_mode=True)
    z, labels = np.ones((2, 8), np.float32), np.array([0, 2], np.int32)
    np.testing.assert_allclose(loaded([z, labels]), g([z, labels]), atol=1e-6)


def test_every_generator_block_sees_the_latent_and_the_class():
    g = sngan_generator(n_classes=3, size=32, latent_dim=8, channels=4)
    norms = [layer for layer in g.layers if isinstance(layer, ModulatedBatchNorm)]
    assert len(norms) == 4                                      # the 4x4 seed and the 8, 16, 32 px blocks
    condition = g.get_layer("condition").output
    assert all(layer.input[1] is condition for layer in norms)
    assert condition.shape[-1] == 8 + g.get_layer("class_embedding").dim


def test_custom_layers_round_trip_their_config():
    for layer in (SNConv2D(4, 3, strides=2), SNDense(5), ConditionalBatchNorm(3), ClassProjection(3),
                  ClassEmbedding(3, 6), ModulatedBatchNorm(momentum=0.8), UpConv(6)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
