"""The FFT-gradient convolution computes exactly what tf.nn.conv2d computes, gradients included."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from core.gan.fft_conv import conv2d_same_fft_grad  # noqa: E402


@pytest.mark.parametrize("kernel_size,size", [(16, 20), (5, 9), (4, 8)])
def test_values_and_both_gradients_match_the_plain_convolution(kernel_size, size):
    rng = np.random.default_rng(kernel_size)
    x = tf.constant(rng.standard_normal((3, size, size + 3, 4)), tf.float32)
    kernel = tf.Variable(rng.standard_normal((kernel_size, kernel_size, 4, 1)).astype("float32"))
    target = tf.constant(rng.standard_normal((3, size, size + 3, 1)), tf.float32)

    def loss_and_grads(conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x, kernel)
            loss = tf.reduce_sum((y - target) ** 2)
        return (y, *tape.gradient(loss, [x, kernel]))

    ours = loss_and_grads(conv2d_same_fft_grad)
    plain = loss_and_grads(lambda a, k: tf.nn.conv2d(a, k, 1, "SAME"))
    for mine, expected in zip(ours, plain):
        np.testing.assert_allclose(mine.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


def test_more_than_one_output_channel_is_refused():
    with pytest.raises(ValueError, match="one output channel"):
        conv2d_same_fft_grad(tf.zeros((1, 8, 8, 2)), tf.zeros((3, 3, 2, 2)))
