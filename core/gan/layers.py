"""Custom layers of the sngan models, registered so a saved `generator.keras` loads with safe_mode=True.

Why not `keras.layers.SpectralNormalization`: in Keras 3.15 it overwrites the wrapped kernel in place,
so gradients do not flow through the normalisation, and it cannot wrap an `Embedding`. Here the
kernel stays the trainable variable and `kernel / sigma` is computed in the forward pass, so the
gradient sees the normalisation (Miyato et al. 2018). The power-iteration vector `u` is updated only
in training mode and is a mean-aggregated variable, so it is valid under MirroredStrategy.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cxr_gan"


def _l2_normalize(x, eps=1e-12):
    return x / ops.sqrt(ops.sum(ops.square(x)) + eps)


class _SpectralKernel:
    """Mixin: `self.normalized_kernel(training)` = kernel / (largest singular value, by power iteration)."""

    def _add_u(self, units: int):
        self.u = self.add_weight(shape=(1, units), initializer=keras.initializers.RandomNormal(),
                                 trainable=False, autocast=False, aggregation="mean", name="sn_u",
                                 dtype="float32")

    def normalized_kernel(self, training):
        kernel = ops.cast(self.kernel.value, "float32")
        w = ops.reshape(kernel, (-1, kernel.shape[-1]))
        u = ops.stop_gradient(self.u.value)
        v = ops.stop_gradient(_l2_normalize(ops.matmul(u, ops.transpose(w))))
        if training:
            u = ops.stop_gradient(_l2_normalize(ops.matmul(v, w)))
            self.u.assign(u)
        sigma = ops.sum(ops.matmul(v, w) * u)
        return ops.cast(kernel / sigma, self.compute_dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SNConv2D(_SpectralKernel, keras.layers.Layer):
    """Spectrally normalised 2-D convolution (NHWC)."""

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.use_bias = use_bias

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(shape=(k, k, input_shape[-1], self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias") if self.use_bias else None
        self._add_u(self.filters)

    def call(self, x, training=False):
        y = ops.conv(x, self.normalized_kernel(training), strides=self.strides, padding=self.padding)
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.padding == "same":
            h = None if h is None else -(-h // self.strides)
            w = None if w is None else -(-w // self.strides)
        else:
            h = None if h is None else (h - self.kernel_size) // self.strides + 1
            w = None if w is None else (w - self.kernel_size) // self.strides + 1
        return (n, h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SNDense(_SpectralKernel, keras.layers.Layer):
    """Spectrally normalised dense layer."""

    def __init__(self, units, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = use_bias

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias") if self.use_bias else None
        self._add_u(self.units)

    def call(self, x, training=False):
        y = ops.matmul(x, self.normalized_kernel(training))
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalBatchNorm(keras.layers.Layer):
    """Batch norm whose scale and shift come from the class: `bn(x) * (1 + gamma[y]) + beta[y]`.

    Inputs `[x (N, H, W, C), label int (N,)]`. Putting the class into every generator block is what
    makes the generator follow its label (an embedding at the input alone was ignored, FINDINGS).
    Momentum 0.9 so the moving statistics used at inference keep up with a short run. The statistics
    are synchronised across replicas (one device: no change), so every worker of a distributed run
    normalises by the global batch and keeps the same moving statistics (tests/test_multiworker.py).
    """

    def __init__(self, n_classes, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        self.momentum = momentum
        self.norm = keras.layers.BatchNormalization(center=False, scale=False, momentum=momentum,
                                                    epsilon=1e-5, synchronized=True, dtype=self.dtype_policy)

    def build(self, input_shape):
        x_shape = input_shape[0]
        channels = x_shape[-1]
        self.norm.build(x_shape)
        self.gamma = self.add_weight(shape=(self.n_classes, channels), initializer="zeros", name="gamma")
        self.beta = self.add_weight(shape=(self.n_classes, channels), initializer="zeros", name="beta")

    def call(self, inputs, training=False):
        x, label = inputs
        label = ops.cast(ops.reshape(label, (-1,)), "int32")
        y = self.norm(x, training=training)
        gamma = ops.take(self.gamma, label, axis=0)[:, None, None, :]
        beta = ops.take(self.beta, label, axis=0)[:, None, None, :]
        return y * (1.0 + gamma) + beta

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "momentum": self.momentum}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassProjection(keras.layers.Layer):
    """Projection discriminator term `<embed(y), h>` (Miyato & Koyama 2018). Inputs `[h (N, C), label (N,)]`."""

    def __init__(self, n_classes, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)

    def build(self, input_shape):
        self.embedding = self.add_weight(shape=(self.n_classes, input_shape[0][-1]),
                                         initializer="glorot_uniform", name="embedding")

    def call(self, inputs):
        h, label = inputs
        label = ops.cast(ops.reshape(label, (-1,)), "int32")
        return ops.sum(ops.take(self.embedding, label, axis=0) * h, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GlobalSumPool(keras.layers.Layer):
    """Sum over H and W (SNGAN/BigGAN discriminators pool by sum, not mean)."""

    def call(self, x):
        return ops.sum(x, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MinibatchStdDev(keras.layers.Layer):
    """Append the batch's average feature standard deviation as one constant channel (ProGAN).

    Lets the discriminator see diversity: a generator that ignores z and draws one image per class
    produces a batch with a tell-tale low deviation. Statistics are over the whole batch of one call,
    so real and fake images go through the discriminator in separate calls.
    """

    def call(self, x):
        std = ops.sqrt(ops.var(ops.cast(x, "float32"), axis=0) + 1e-8)
        value = ops.cast(ops.mean(std), x.dtype)
        shape = ops.shape(x)
        return ops.concatenate([x, ops.ones((shape[0], shape[1], shape[2], 1), x.dtype) * value], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassEmbedding(keras.layers.Layer):
    """`embedding[label] * strength`: the class vector that conditions every generator block.

    `strength` is a non-trainable scalar: 1 for an ordinary conditional generator. Transitional training
    (Shahbazi et al. 2022) sets it from 0 (unconditional) up to 1 while training, so on small data the
    generator first learns the images and only then the classes; it is saved with the model, so a
    generator saved mid-ramp draws exactly what it was trained to draw.
    """

    def __init__(self, n_classes, dim, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        self.dim = int(dim)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.n_classes, self.dim), initializer="glorot_uniform",
                                          name="embeddings")
        self.strength = self.add_weight(shape=(), initializer="ones", trainable=False, name="strength",
                                        dtype="float32", autocast=False)

    def call(self, label):
        label = ops.cast(ops.reshape(label, (-1,)), "int32")
        return ops.take(self.embeddings, label, axis=0) * ops.cast(self.strength, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "dim": self.dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ModulatedBatchNorm(keras.layers.Layer):
    """Batch norm whose scale and shift are linear in a conditioning vector (BigGAN's conditional BN).

    Inputs `[x (N, H, W, C), cond (N, D)]`, output `bn(x) * (1 + cond @ W_gamma) + cond @ W_beta`. With
    `cond` = [this block's slice of z, the class embedding], both the latent and the class reach every
    block: the class steers each scale, and z varies fine detail as well as the layout, which a single
    latent at the input tends to lose (the generator repeats itself). Momentum 0.9 and synchronised
    statistics as in ConditionalBatchNorm.
    """

    def __init__(self, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.norm = keras.layers.BatchNormalization(center=False, scale=False, momentum=momentum,
                                                    epsilon=1e-5, synchronized=True, dtype=self.dtype_policy)

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        self.norm.build(x_shape)
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.gamma = self.add_weight(shape=(cond_shape[-1], x_shape[-1]), initializer=init, name="gamma")
        self.beta = self.add_weight(shape=(cond_shape[-1], x_shape[-1]), initializer=init, name="beta")

    def call(self, inputs, training=False):
        """The normalisation and the modulation folded into one per-sample scale and shift, computed in
        float32 on (N, C) and applied as `x * scale + shift` in the compute precision: two passes over the
        image-sized tensor where BatchNormalization then the modulation took six (with its casts to
        float32 and back in bfloat16). The statistics and moving averages are BatchNormalization's."""
        x, cond = inputs
        norm = self.norm
        if training:
            mean, variance = ops.moments(ops.cast(x, "float32"), axes=[0, 1, 2], synchronized=True)
            norm.moving_mean.assign(norm.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            norm.moving_variance.assign(norm.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            mean, variance = norm.moving_mean, norm.moving_variance
        cond = ops.cast(cond, "float32")
        scale = ops.rsqrt(variance + norm.epsilon) * (1.0 + ops.matmul(cond, self.gamma))
        shift = ops.matmul(cond, self.beta) - mean * scale
        scale = ops.cast(scale, x.dtype)[:, None, None, :]
        shift = ops.cast(shift, x.dtype)[:, None, None, :]
        return x * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


def _transposed_taps(k, axis):
    """The 4 taps along `axis` (0 rows, 1 columns) of the stride-2 transposed convolution equal to a nearest
    2x upsampling followed by a 3-tap kernel (k0, k1, k2): input i reaches outputs 2i-1, 2i, 2i+1, 2i+2 with
    k2, k1 + k2, k0 + k1, k0."""
    k0, k1, k2 = (k[i] if axis == 0 else k[:, i] for i in range(3))   # slices: dense gradients
    return ops.stack([k2, k1 + k2, k0 + k1, k0], axis=axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class UpConv(keras.layers.Layer):
    """Nearest 2x upsampling, then a 3x3 'same' convolution without bias, computed as one transposed conv.

    The same function and the same (3, 3, in, filters) kernel as UpSampling2D(2) followed by
    Conv2D(filters, 3, padding='same', use_bias=False), but computed as a stride-2 transposed convolution
    with the 4x4 kernel built from it: each output pixel reads a 2x2 neighbourhood of the input, so no
    upsampled tensor is built (its Tile was 7% of a 128 px step) and the multiply-adds are 4/9 of the
    upsampled conv's. Forward and both gradients took 1.4-2.4x less time than the sub-pixel form (a 3x3
    conv into 4x the channels whose kernels are 5/9 zeros) over the default model's blocks, in bfloat16
    and float32.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(3, 3, input_shape[-1], self.filters),
                                      initializer="glorot_uniform", name="kernel")

    def call(self, x):
        import tensorflow as tf

        kernel = _transposed_taps(_transposed_taps(self.kernel, 0), 1)
        kernel = ops.cast(ops.transpose(kernel, (0, 1, 3, 2)), self.compute_dtype)   # (4, 4, filters, in)
        sides = [2 * side if side is not None else 2 * tf.shape(x)[i + 1] for i, side in enumerate(x.shape[1:3])]
        return tf.nn.conv2d_transpose(x, kernel, tf.stack([tf.shape(x)[0], *sides, self.filters]), 2, "SAME")

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupNorm(keras.layers.GroupNormalization):
    """keras' GroupNormalization (channels last, scale and centre), computed in fewer passes.

    The group statistics come from per-channel means of x and x^2 in float32 (contiguous reductions over
    the pixels, then a tiny one over each group's channels), and the normalisation is applied as one
    per-sample `x * scale + shift` in the compute precision. keras reshapes to (N, H, W, G, C/G), reduces
    over strided axes and normalises the whole tensor in float32: the class guide's first GroupNorm was
    the most expensive layer of a 128 px step. Same weights, same function up to rounding.
    """

    def call(self, inputs):
        channels, groups = inputs.shape[-1], self.groups
        x = ops.cast(inputs, "float32")
        per_channel = ops.stack([ops.mean(x, axis=(1, 2)), ops.mean(ops.square(x), axis=(1, 2))], axis=1)
        grouped = ops.mean(ops.reshape(per_channel, (-1, 2, groups, channels // groups)), axis=-1, keepdims=True)
        mean, mean_square = grouped[:, 0], grouped[:, 1]                              # (N, G, 1)
        inv = ops.rsqrt(ops.maximum(mean_square - ops.square(mean), 0.0) + self.epsilon)
        scale = ops.reshape(inv * ops.reshape(self.gamma, (groups, channels // groups)), (-1, channels))
        shift = self.beta - ops.reshape(mean * ops.ones((1, 1, channels // groups)), (-1, channels)) * scale
        scale, shift = (ops.cast(v, inputs.dtype)[:, None, None, :] for v in (scale, shift))
        return inputs * scale + shift
