"""Generator and discriminator builders, chosen by name: `reference` and `sngan`.

Every generator takes `[z float32 (N, latent_dim), label int32 (N,)]` and returns float32
`(N, size, size, 1)` in [-1, 1]. Discriminators take `[image (N, size, size, 1), label int32 (N,)]`;
`reference` returns a probability (N, 1) as in the notebook, `sngan` returns
`[score (N, 1), projection (N, 1), class_logits (N, n_classes)]` (hinge loss on score + projection,
auxiliary class loss on the logits).
"""
from __future__ import annotations

import math

import keras
from keras import layers

from core.gan.layers import (ClassEmbedding, ClassProjection, ConditionalBatchNorm, GlobalSumPool, MinibatchStdDev,
                             ModulatedBatchNorm, SNConv2D, SNDense, UpConv)

CLASS_DIM = 32   # length of the generator's class embedding


def _inputs(latent_dim: int):
    z = keras.Input(shape=(latent_dim,), dtype="float32", name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    return z, label


def reference_generator(n_classes: int, latent_dim: int = 100) -> keras.Model:
    """The notebook generator, layer for layer (issue 3): 8x8 -> four stride-2 transposed convs -> 16x16 conv."""
    z, label = _inputs(latent_dim)
    y = layers.Embedding(n_classes, 50)(label)
    y = layers.Dense(8 * 8 * 64)(y)
    y = layers.Reshape((8, 8, 64))(y)
    x = layers.Dense(8 * 8 * 128)(z)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((8, 8, 128))(x)
    x = layers.Concatenate()([x, y])
    for _ in range(4):
        x = layers.Conv2DTranspose(128, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    out = layers.Conv2D(1, 16, padding="same", activation="tanh", dtype="float32", name="to_image")(x)
    return keras.Model([z, label], out, name="reference_generator")


def reference_discriminator(n_classes: int, size: int = 128) -> keras.Model:
    """The notebook discriminator: label as a second image channel, four 5x5 stride-2 convs, sigmoid."""
    image = keras.Input(shape=(size, size, 1), name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    y = layers.Embedding(n_classes, 50)(label)
    y = layers.Dense(size * size)(y)
    y = layers.Reshape((size, size, 1))(y)
    x = layers.Concatenate()([image, y])
    for _ in range(4):
        x = layers.Conv2D(128, 5, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.4)(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model([image, label], out, name="reference_discriminator")


def _blocks(size: int) -> int:
    blocks = int(round(math.log2(size / 4)))
    if 4 * 2 ** blocks != size:
        raise ValueError(f"size must be 4 * a power of two, not {size}")
    return blocks


def _width(channels: int, base: int, resolution: int) -> int:
    """Channels at `resolution`: `channels` at `base` px, x2 per halving, between 8 and 8 * channels."""
    return int(min(8 * channels, max(8, channels * base // resolution)))


def sngan_generator(n_classes: int, size: int = 64, latent_dim: int = 100, channels: int = 32,
                    latent_blocks: bool = True) -> keras.Model:
    """4x4 seed, then per block: nearest upsample and 3x3 conv (one transposed-conv `UpConv`), conditional batch
    norm, ReLU.

    `latent_blocks` (the default): every batch norm is modulated by [z, class embedding] (BigGAN-deep's
    conditioning), so both the latent and the class reach every block, and the class embedding is a
    `ClassEmbedding` whose strength transitional training ramps from 0 to 1. Without it (the model of
    runs before issue 9): z and a class embedding enter at the input only and each batch norm takes a
    per-class scale and shift. Width depends on the resolution only (`channels` at 64 px, halving per
    doubling, at most 8x), so each extra block for 128 or 256 px adds a constant cost.
    """
    blocks = _blocks(size)
    z, label = _inputs(latent_dim)
    seed_width = _width(channels, 64, 4)
    if latent_blocks:
        cond = layers.Concatenate(name="condition")([z, ClassEmbedding(n_classes, CLASS_DIM, name="class_embedding")(label)])

        def norm(h):
            return ModulatedBatchNorm()([h, cond])
    else:
        cond = layers.Concatenate()([z, layers.Embedding(n_classes, CLASS_DIM, name="class_embedding")(label)])

        def norm(h):
            return ConditionalBatchNorm(n_classes)([h, label])
    h = layers.Dense(4 * 4 * seed_width, use_bias=False)(cond)
    h = layers.Reshape((4, 4, seed_width))(h)
    h = layers.ReLU()(norm(h))
    for i in range(1, blocks + 1):
        h = UpConv(_width(channels, 64, 4 * 2 ** i))(h)
        h = layers.ReLU()(norm(h))
    out = layers.Conv2D(1, 3, padding="same", activation="tanh", dtype="float32", name="to_image")(h)
    return keras.Model([z, label], out, name="sngan_generator")


def sngan_discriminator(n_classes: int, size: int = 64, channels: int = 32) -> keras.Model:
    """Spectral-norm convs down to 4x4, minibatch deviation, sum pooling, then three heads:
    `[score (N, 1), projection (N, 1), class_logits (N, n_classes)]`. The adversarial score is
    `score + strength * projection` (Miyato & Koyama's projection discriminator, with the class term
    ramped in by transitional training); the class logits feed the auxiliary class loss. Call it on
    real and fake batches separately (the deviation is per call). The score has no bias: an offset
    shared by every image says nothing about it, and its hinge gradient is zero whenever the real and
    the fake batch both sit inside the margin.

    The class head is a plain Dense: it only feeds the class loss, which needs no Lipschitz bound, and
    with spectral norm it learned the classes too slowly to steer the generator (bench/quality.py).
    """
    blocks = _blocks(size)
    image = keras.Input(shape=(size, size, 1), name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    h = layers.LeakyReLU(0.2)(SNConv2D(_width(channels, 32, size), 3)(image))
    for i in range(1, blocks + 1):
        h = SNConv2D(_width(channels, 32, size // 2 ** i), 4, strides=2)(h)
        h = layers.LeakyReLU(0.2)(h)
    h = MinibatchStdDev()(h)
    h = layers.LeakyReLU(0.2)(SNConv2D(channels * 8, 3)(h))
    h = GlobalSumPool()(h)
    h = layers.Activation("linear", dtype="float32")(h)
    score = SNDense(1, use_bias=False, dtype="float32", name="score")(h)
    projection = ClassProjection(n_classes, dtype="float32", name="projection")([h, label])
    logits = layers.Dense(n_classes, dtype="float32", name="class_logits")(h)
    return keras.Model([image, label], [score, projection, logits], name="sngan_discriminator")


def with_dtype_policy(model: keras.Model, policy: str, keep_outputs: bool = False) -> keras.Model:
    """A copy of `model` (same weights) whose layers compute in `policy`; its input layers, and with
    `keep_outputs` the layers that give its outputs, keep their own dtype. The trainer saves a bfloat16
    run's generator in float32, and the export computes a generator in bfloat16 on request."""
    outputs = {id(t._keras_history[0]) for t in model.outputs} if keep_outputs else set()

    def clone(layer):
        config = layer.get_config()
        if id(layer) not in outputs and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def build_models(arch: str, n_classes: int, size: int, latent_dim: int, channels: int, latent_blocks: bool = True):
    """(generator, discriminator) for the named architecture."""
    if arch == "reference":
        return reference_generator(n_classes, latent_dim), reference_discriminator(n_classes, size)
    if arch == "sngan":
        return (sngan_generator(n_classes, size, latent_dim, channels, latent_blocks),
                sngan_discriminator(n_classes, size, channels))
    raise ValueError(f"unknown architecture {arch!r}")
