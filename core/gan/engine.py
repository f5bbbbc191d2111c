"""The GAN itself: models, optimizers, EMA generator and one compiled train step, under a tf.distribute strategy.

One `tf.function` does a whole step: a discriminator update on real and fake images, a generator
update, the EMA update. No `predict`/`train_on_batch`: those are what made the notebook way silently
freeze its discriminator under Keras 3 (FINDINGS). Randomness inside the step is stateless, keyed by
(seed, step, replica), so a step is repeatable and a resumed run continues the same random stream.

Losses are summed per example and divided by the GLOBAL batch, so gradients summed across replicas
by the optimizer equal the single-device gradient. Variables changed inside the step (spectral-norm
vectors, batch-norm statistics) are mean-aggregated; the EMA is updated in cross-replica context.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf

from core.errors import UserError
from core.gan.augment import diff_augment
from core.gan.config import TrainConfig
from core.gan.models import build_models



def make_strategy(name: str):
    """The tf.distribute strategy named in the config ('mirrored' uses all GPUs, else all logical CPUs)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"train: unknown strategy {name!r}")


@contextmanager
def dtype_policy(name: str):
    """Build layers under a Keras dtype policy without leaking it to the rest of the process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _sum_over(values, denominator):
    return tf.reduce_sum(tf.cast(values, tf.float32)) / float(denominator)


class GanEngine:
    """Owns G, D, the EMA generator and both optimizers; `train_step` runs one global step."""

    def __init__(self, config: TrainConfig, n_classes: int, strategy=None):
        self.config = config
        self.n_classes = n_classes
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.reference = config.arch == "reference"
        per_update = config.batch // 2 if self.reference else config.batch
        if per_update % self.replicas:
            raise UserError(f"train: --batch {config.batch} does not split evenly over {self.replicas} replicas")
        self.real_global = per_update            # real images per D update, all replicas
        self.real_per_replica = per_update // self.replicas
        self.policies = () if self.reference else config.augment_policies()
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope(), dtype_policy(config.precision):
            self.generator, self.discriminator = build_models(
                config.arch, n_classes, config.size, config.latent_dim, config.channels)
            self.ema = keras.models.clone_model(self.generator)
            self.ema.set_weights(self.generator.get_weights())
            self.opt_g = self._optimizer(config.lr_g)
            self.opt_d = self._optimizer(config.lr_d)
            self.opt_g.build(self.generator.trainable_variables)
            self.opt_d.build(self.discriminator.trainable_variables)
        self._seed = tf.constant([config.seed, 0x5EED], tf.int64)
        mode = config.xla_mode()
        self._last_layer = self._fast_output_layer(mode) if mode in ("last_layer", "fft") else None
        self._step = tf.function(self._global_step, jit_compile=config.xla_mode() == "step",
                                 reduce_retracing=True)
        self._generate = tf.function(lambda z, y: self.ema([z, y], training=False))

    def _fast_output_layer(self, mode: str):
        """(body model, output conv) for training: same variables, same maths as the layer `to_image`.

        TensorFlow's CPU kernel for the weight gradient of the reference's Conv2D(1, 16x16) on 128
        channels takes seconds per image. 'last_layer' compiles that conv (forward and gradient) with
        XLA; 'fft' computes its weight gradient in the frequency domain (core/gan/fft_conv.py). The
        saved generator is unchanged: only the training step computes the layer differently.
        """
        from core.gan.fft_conv import conv2d_same_fft_grad

        last = self.generator.get_layer("to_image")
        body = keras.Model(self.generator.inputs, last.input)
        activation = last.activation

        def output_layer(x, kernel, bias):
            x = tf.cast(x, kernel.dtype)
            conv = conv2d_same_fft_grad(x, kernel) if mode == "fft" else tf.nn.conv2d(x, kernel, 1, "SAME")
            return activation(conv + bias)

        if mode == "last_layer":
            output_layer = tf.function(output_layer, jit_compile=True)
        return body, lambda x: output_layer(x, last.kernel.value, last.bias.value)

    def _generator_train(self, inputs):
        """Generator forward in training mode, through the compiled output layer when configured."""
        if self._last_layer is None:
            return self.generator(inputs, training=True)
        body, output_layer = self._last_layer
        return output_layer(body(inputs, training=True))

    def _optimizer(self, lr: float):
        if self.reference:   # the notebook's optimizer for both networks
            opt = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)
        else:
            opt = keras.optimizers.Adam(lr, beta_1=self.config.beta_1, beta_2=self.config.beta_2)
        if self.config.precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    # ---- the step -------------------------------------------------------------------------------
    def train_step(self, inputs, step: int) -> dict[str, float]:
        """One global step on distributed `inputs` (images uint8, labels int32); returns python floats."""
        out = self._step(inputs, tf.constant(step, tf.int64))
        return {name: float(value) for name, value in out.items()}

    def _global_step(self, inputs, step):
        images, labels = inputs
        out = self.strategy.run(self._replica_step, args=(images, labels, step))
        out = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        self._update_ema(step)
        return out

    def _replica_step(self, images, labels, step):
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(self._seed, step), replica)
        keys = tf.random.experimental.stateless_split(key, 6)
        real = tf.cast(images, tf.float32)[..., None] / 127.5 - 1.0
        n = self.real_per_replica
        latent = self.config.latent_dim
        z_d = tf.random.stateless_normal([n, latent], keys[0])
        g_copies = 2 if self.reference else 1
        z_g = tf.random.stateless_normal([n * g_copies, latent], keys[1])
        y_g = tf.tile(labels, [g_copies])
        d_metrics = self._d_update(real, labels, z_d, keys[2], keys[3])
        g_metrics = self._g_update(z_g, y_g, keys[4])
        return {**d_metrics, **g_metrics}

    def _d_update(self, real, labels, z, key_real, key_fake):
        """Real and fake go through D in separate calls: the minibatch-deviation feature is per batch."""
        fake = tf.stop_gradient(self._generator_train([z, labels]))
        real_aug = diff_augment(real, self.policies, key_real)
        fake_aug = diff_augment(fake, self.policies, key_fake)
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real_out = self.discriminator([real_aug, labels], training=True)
            fake_out = self.discriminator([fake_aug, labels], training=True)
            if self.reference:
                losses, metrics = self._reference_d_losses(real_out, fake_out)
            else:
                losses, metrics = self._sngan_d_losses(real_out[0], fake_out[0], real_out[1], labels)
                if self.config.r1_gamma > 0:
                    losses["r1"] = self._r1_penalty(real_aug, labels)
            loss = tf.add_n(list(losses.values()))
            scaled = self.opt_d.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        self.opt_d.apply_gradients(zip(grads, variables))
        return metrics

    def _g_update(self, z, labels, key):
        variables = self.generator.trainable_variables
        gb = self.real_global * (2 if self.reference else 1)
        with tf.GradientTape() as tape:
            fake = self._generator_train([z, labels])
            output = self.discriminator([diff_augment(fake, self.policies, key), labels], training=True)
            if self.reference:
                loss = _sum_over(-tf.math.log(tf.clip_by_value(output, 1e-7, 1.0)), gb)
                metrics = {"g_loss": loss}
            else:
                score, logits = output
                adversarial = _sum_over(-score, gb)
                ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
                loss = adversarial + self.config.ac_weight * _sum_over(ce, gb)
                hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
                metrics = {"g_loss": loss, "d_class_acc_fake": _sum_over(hits, gb)}
            scaled = self.opt_g.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        self.opt_g.apply_gradients(zip(grads, variables))
        return metrics

    def _reference_d_losses(self, p_real, p_fake):
        gb = self.real_global
        bce_real = -tf.math.log(tf.clip_by_value(p_real, 1e-7, 1.0))
        bce_fake = -tf.math.log(tf.clip_by_value(1.0 - p_fake, 1e-7, 1.0))
        losses = {"real": _sum_over(bce_real, 2 * gb), "fake": _sum_over(bce_fake, 2 * gb)}
        metrics = {"d_loss_real": _sum_over(bce_real, gb), "d_loss_fake": _sum_over(bce_fake, gb),
                   "d_acc_real": _sum_over(p_real > 0.5, gb), "d_acc_fake": _sum_over(p_fake < 0.5, gb)}
        return losses, metrics

    def _sngan_d_losses(self, real_score, fake_score, real_logits, labels):
        gb = self.real_global
        loss_real = _sum_over(tf.nn.relu(1.0 - real_score), gb)
        loss_fake = _sum_over(tf.nn.relu(1.0 + fake_score), gb)
        ce = keras.losses.sparse_categorical_crossentropy(labels, real_logits, from_logits=True)
        losses = {"real": loss_real, "fake": loss_fake, "class": self.config.ac_weight * _sum_over(ce, gb)}
        hits = tf.equal(tf.argmax(real_logits, axis=-1, output_type=tf.int32), labels)
        metrics = {"d_loss_real": loss_real, "d_loss_fake": loss_fake,
                   "d_acc_real": _sum_over(real_score > 0, gb), "d_acc_fake": _sum_over(fake_score < 0, gb),
                   "d_class_acc_real": _sum_over(hits, gb)}
        return losses, metrics

    def _r1_penalty(self, real, labels):
        with tf.GradientTape() as tape:
            tape.watch(real)
            score = tf.reduce_sum(self.discriminator([real, labels], training=True)[0])
        grad = tape.gradient(score, real)
        return 0.5 * self.config.r1_gamma * _sum_over(tf.square(grad), self.real_global)

    def _update_ema(self, step):
        """EMA with warm-up (decay grows from 0.1 towards ema_decay), so short runs are not all init."""
        count = tf.cast(step, tf.float32) + 1.0
        decay = tf.minimum(self.config.ema_decay, (1.0 + count) / (10.0 + count))
        for target, source in zip(self.ema.weights, self.generator.weights):
            target.assign(decay * target + (1.0 - decay) * tf.cast(source, target.dtype))

    # ---- generation -------------------------------------------------------------------------------
    def generate(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """EMA generator output, float32 (N, S, S, 1) in [-1, 1]."""
        return self._generate(tf.constant(z, tf.float32), tf.constant(labels, tf.int32)).numpy()

    # ---- state ------------------------------------------------------------------------------------
    def _groups(self):
        return {"g": self.generator.variables, "d": self.discriminator.variables, "ema": self.ema.variables,
                "opt_g": self.opt_g.variables, "opt_d": self.opt_d.variables}

    def state_bytes(self, step: int, extra: dict) -> bytes:
        """The whole training state as an .npz (no pickles): every variable, the step, run bookkeeping."""
        arrays = {"step": np.array(step, np.int64), "extra": np.array(json.dumps(extra))}
        for group, variables in self._groups().items():
            for i, variable in enumerate(variables):
                arrays[f"{group}/{i:04d}"] = np.asarray(variable.numpy())
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def load_state(self, path) -> tuple[int, dict]:
        """Restore from a checkpoint file; any unreadable or mismatched content is a UserError naming it."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                step = int(archive["step"])
                extra = json.loads(str(archive["extra"]))
                values = {group: [archive[f"{group}/{i:04d}"] for i in range(len(variables))]
                          for group, variables in self._groups().items()}
        except Exception as error:  # zip, npz, json and key errors all mean the same to the user
            raise UserError(f"{path}: corrupt or incomplete checkpoint ({type(error).__name__}: {error}); "
                            f"delete it to resume from an earlier one") from error
        for group, variables in self._groups().items():
            for variable, value in zip(variables, values[group]):
                if tuple(variable.shape) != value.shape:
                    raise UserError(f"{path}: checkpoint does not match this model "
                                    f"({variable.path}: {value.shape} vs {tuple(variable.shape)})")
        for group, variables in self._groups().items():
            for variable, value in zip(variables, values[group]):
                variable.assign(value)
        return step, extra
