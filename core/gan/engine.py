"""The GAN itself: models, optimizers, EMA generator and one compiled train step, under a tf.distribute strategy.

One `tf.function` does a whole step: a discriminator update on real and fake images, a generator
update (scored also by the class guide and the mode-seeking term when they are on), a class-guide
update on the real images (and on the discriminator step's generated ones, `guide_fakes`), the EMA
update. No `predict`/`train_on_batch`: those are what made the notebook way silently freeze its
discriminator under Keras 3 (FINDINGS). Randomness inside the step is stateless, keyed by (seed, step,
replica), so a step is repeatable and a resumed run continues the same random stream.

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
from core.gan.guide import GUIDE_LR, GUIDE_POLICIES, build_guide
from core.gan.models import build_models, with_dtype_policy



ADA_INTERVAL = 4          # steps between adjustments of the augmentation probability (ADA uses 4)
LECAM_DECAY = 0.99        # running averages of D's scores that anchor the LeCam term (Tseng et al.)
LR_FLOOR = 0.1            # the learning rates' final share of lr_g and lr_d (TrainConfig.lr_decay_*)


def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has native bfloat16 arithmetic (AMX or AVX512-BF16), read from its flags."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            flags = set(" ".join(line.split(":", 1)[1] for line in handle if line.startswith("flags")).split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def has_cuda_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(name: str) -> tuple[str, str | None]:
    """The Keras dtype policy to train with, and a one-line notice when it is not what was asked for.

    'auto' is mixed_float16 (loss-scaled) on a CUDA GPU, mixed_bfloat16 on a CPU with AMX or AVX512-BF16,
    float32 elsewhere. On such a CPU (AVX512-BF16, 2 cores) bfloat16 cost no quality: ten-minute runs on
    unseen realistic phantoms, three training seeds each (bench/quality.py --data-seed 7), put 97.0% +- 1.1
    of the images in their class against 97.5% +- 2.3 in float32, with within-class MS-SSIM 0.552 against
    0.562, in 4,355 steps against 3,779 (a step 1.36x as fast at 64 px, bench/train_throughput.py). A
    killed bfloat16 run resumes bit for bit like a float32 one (tests/test_gan_engine.py), given that the
    engine starts from a clean Keras session (see GanEngine).
    An explicit mixed precision the hardware has no fast arithmetic for falls back to float32: without
    native support TensorFlow emulates bfloat16 and float16, slower than float32 (bench/train_throughput.py).
    """
    gpu = has_cuda_gpu()
    if name == "auto":
        return ("mixed_float16" if gpu else "mixed_bfloat16" if cpu_supports_bf16() else "float32"), None
    if name == "mixed_float16" and not gpu:
        return "float32", "precision mixed_float16 needs a CUDA GPU; training in float32 instead"
    if name == "mixed_bfloat16" and not gpu and not cpu_supports_bf16():
        return "float32", ("precision mixed_bfloat16: this CPU has no AMX or AVX512-BF16 (bfloat16 would be "
                           "emulated, slower than float32); training in float32 instead")
    return name, None


def lecam_penalty(real_score, fake_score, anchor_real, anchor_fake, denominator):
    """LeCam regulariser (Tseng et al. 2021): E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2].

    `a_real`, `a_fake` are running averages of D's scores on real and fake images. Sums are divided by
    `denominator` (the global batch) like every loss here, so replicas add up to the single-device value.
    """
    real_term = tf.square(tf.nn.relu(tf.cast(real_score, tf.float32) - anchor_fake))
    fake_term = tf.square(tf.nn.relu(anchor_real - tf.cast(fake_score, tf.float32)))
    return _sum_over(real_term, denominator) + _sum_over(fake_term, denominator)


def condition_strength(step, start: int, ramp: int):
    """Transitional conditioning: 0 before `start`, then linear to 1 over `ramp` steps (1 when both are 0)."""
    step = tf.cast(step, tf.float32)
    if ramp <= 0:
        return tf.where(step < float(start), 0.0, 1.0)
    return tf.clip_by_value((step - float(start)) / float(ramp), 0.0, 1.0)


def lr_scale(step, start: int, steps: int):
    """The learning rates' factor at `step`: 1 until `start`, then linear to LR_FLOOR over `steps`, then
    LR_FLOOR (1 throughout when `steps` is 0). A function of the step alone, so a resumed run continues
    the same schedule."""
    if steps <= 0:
        return tf.constant(1.0)
    return 1.0 - (1.0 - LR_FLOOR) * condition_strength(step, start, steps)   # the same linear ramp


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


def _score(outputs, strength):
    """sngan's adversarial score from its discriminator's outputs: unconditional + strength * projection."""
    return tf.cast(outputs[0], tf.float32) + strength * tf.cast(outputs[1], tf.float32)


class GanEngine:
    """Owns G, D, the EMA generator and both optimizers; `train_step` runs one global step.

    It builds its models in a cleared Keras session: auto-generated layer names (and with them the
    traced graph) then do not depend on what the process built before. In bfloat16 they matter: Grappler
    fused a second engine's graph differently, and a run resumed in the process that had trained before
    departed from the uninterrupted one by a rounding step, where a resume in a fresh process was exact.
    """

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
        self.pairs_global = self.real_per_replica // 2 * self.replicas   # mode-seeking pairs per step
        if config.diversity_weight > 0 and not self.pairs_global:
            raise UserError(f"train: --diversity-weight needs at least 2 images per step on each of the "
                            f"{self.replicas} device(s); raise --batch")
        self.policies = () if self.reference else config.augment_policies()
        self.precision, notice = resolve_precision(config.precision)
        self.notices = [notice] if notice else []
        if config.precision == "auto" and self.precision == "mixed_bfloat16":
            self.notices.append("number precision: bfloat16, which this CPU computes natively (faster than "
                                "float32 at the same image quality)")
        self.adaptive = bool(self.policies) and config.ada_target > 0 and not self.reference
        self.lecam = config.lecam_weight > 0 and not self.reference
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope(), dtype_policy(self.precision):
            self.generator, self.discriminator = build_models(
                config.arch, n_classes, config.size, config.latent_dim, config.channels, config.latent_blocks)
            self.ema = keras.models.clone_model(self.generator)
            self.ema.set_weights(self.generator.get_weights())
            self.opt_g = self._optimizer(config.lr_g)
            self.opt_d = self._optimizer(config.lr_d)
            self.opt_g.build(self.generator.trainable_variables)
            self.opt_d.build(self.discriminator.trainable_variables)
            self.guide = self.opt_c = None
            if config.guide_weight > 0 and not self.reference:
                self.guide = build_guide(config.size, n_classes + (1 if config.guide_fakes else 0),
                                         fold=config.guide_fold_factor())
                self.opt_c = self._optimizer(GUIDE_LR, plain=True)
                self.opt_c.build(self.guide.trainable_variables)
            self.state = {name: tf.Variable(0.0, trainable=False, name=name,
                                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                          for name in ("augment_p", "ada_sign_sum", "ada_steps", "lecam_real", "lecam_fake")}
        self._strengths = [layer.strength for model in (self.generator, self.ema) for layer in model.layers
                           if hasattr(layer, "strength")]
        self._seed = tf.constant([config.seed, 0x5EED], tf.int64)
        mode = config.xla_mode()
        self._last_layer = self._fast_output_layer(mode) if mode in ("last_layer", "fft") else None
        self._step = tf.function(self._global_step, jit_compile=config.xla_mode() == "step",
                                 reduce_retracing=True)
        self._generate = tf.function(lambda z, y: self.ema([z, y], training=False))
        self._guide_step = tf.function(self._global_guide_step, reduce_retracing=True)

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

    def _optimizer(self, lr: float, plain: bool = False):
        if self.reference:   # the notebook's optimizer for both networks
            opt = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)
        elif plain:          # the class guide: a classifier's usual Adam
            opt = keras.optimizers.Adam(lr)
        else:
            opt = keras.optimizers.Adam(lr, beta_1=self.config.beta_1, beta_2=self.config.beta_2)
        if self.precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    # ---- the step -------------------------------------------------------------------------------
    def train_step(self, inputs, step: int) -> dict[str, float]:
        """One global step on distributed `inputs` (images uint8, labels int32); returns python floats."""
        out = self._step(inputs, tf.constant(step, tf.int64))
        return {name: float(value) for name, value in out.items()}

    def _global_step(self, inputs, step):
        images, labels = inputs
        strength = condition_strength(step, self.config.cond_start, self.config.cond_ramp)
        for variable in self._strengths:
            variable.assign(strength)
        if not self.reference:
            scale = lr_scale(step, self.config.lr_decay_start, self.config.lr_decay_steps)
            self.opt_g.learning_rate.assign(self.config.lr_g * scale)
            self.opt_d.learning_rate.assign(self.config.lr_d * scale)
        out = self.strategy.run(self._replica_step, args=(images, labels, step, strength))
        out = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        self._update_ema(step)
        if not self.reference:
            self._update_anchors(out, step)
            out["augment_p"] = (tf.identity(self.state["augment_p"]) if self.adaptive
                                else tf.constant(1.0 if self.policies else 0.0))
            out["condition"] = strength
            out["lr_scale"] = scale
        return out

    def _update_anchors(self, out, step):
        """After a step: ADA's augmentation probability and the LeCam anchors (cross-replica, global means)."""
        if self.adaptive:
            state, config = self.state, self.config
            state["ada_sign_sum"].assign_add(out["d_sign_real"])
            state["ada_steps"].assign_add(1.0)
            ready = state["ada_steps"] >= ADA_INTERVAL
            r_t = state["ada_sign_sum"] / tf.maximum(state["ada_steps"], 1.0)
            change = tf.sign(r_t - config.ada_target) * self.real_global * state["ada_steps"] / (config.ada_kimg * 1000)
            state["augment_p"].assign(tf.where(ready, tf.clip_by_value(state["augment_p"] + change, 0.0, 1.0),
                                               state["augment_p"]))
            state["ada_sign_sum"].assign(tf.where(ready, 0.0, state["ada_sign_sum"]))
            state["ada_steps"].assign(tf.where(ready, 0.0, state["ada_steps"]))
        if self.lecam:   # running means with a warm-up (the first step copies), like the EMA generator
            count = tf.cast(step, tf.float32)
            decay = tf.minimum(LECAM_DECAY, count / (count + 1.0))
            for side in ("real", "fake"):
                anchor = self.state[f"lecam_{side}"]
                anchor.assign(decay * anchor + (1.0 - decay) * out[f"d_score_{side}"])

    def _replica_step(self, images, labels, step, strength):
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
        if self.config.diversity_weight > 0 and not self.reference:   # pairs: image i and i + n // 2 share a class
            half = n // 2
            y_g = tf.concat([labels[:half], labels[:half], labels[2 * half:]], axis=0)
        d_metrics, fake = self._d_update(real, labels, z_d, keys[2], keys[3], strength)
        g_metrics = self._g_update(z_g, y_g, keys[4], strength)
        if self.guide is None:
            return {**d_metrics, **g_metrics}
        # its own key (folded in, not split), so runs without a guide keep their random streams
        c_metrics = self._guide_update(real, labels, tf.random.experimental.stateless_fold_in(key, 7),
                                       fake if self.config.guide_fakes else None)
        return {**d_metrics, **g_metrics, **c_metrics}

    # ---- the class guide --------------------------------------------------------------------------
    def guide_pretrain_step(self, inputs, step: int) -> float:
        """One guide-only step on real images (before the GAN's first step); returns its class accuracy."""
        return float(self._guide_step(inputs, tf.constant(step, tf.int64)))

    def _global_guide_step(self, inputs, step):
        def replica(images, labels):
            replica_id = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
            key = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(self._seed + 1, step), replica_id)
            real = tf.cast(images, tf.float32)[..., None] / 127.5 - 1.0
            return self._guide_update(real, labels, key)["guide_acc_real"]
        accuracy = self.strategy.run(replica, args=inputs)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, accuracy, axis=None)

    def _guide_update(self, real, labels, key, fake=None):
        """A classifier step of the guide on real images augmented with GUIDE_POLICIES; with `fake` (the
        discriminator step's generated images, `guide_fakes`) those too, as the extra class n_classes. Real
        and generated images go through the guide in one call (its GroupNorm is per image, so this is the
        same function as two calls, and one call of twice the batch runs faster)."""
        images = diff_augment(real, GUIDE_POLICIES, key)
        n = tf.shape(labels)[0]
        if fake is not None:
            generated = tf.fill(tf.shape(labels), self.guide.output_shape[-1] - 1)
            images = tf.concat([images, diff_augment(fake, GUIDE_POLICIES,
                                                     tf.random.experimental.stateless_fold_in(key, 1))], axis=0)
            targets = tf.concat([labels, generated], axis=0)
        else:
            targets = labels
        variables = self.guide.trainable_variables
        with tf.GradientTape() as tape:
            all_logits = self.guide(images, training=True)
            ce = keras.losses.sparse_categorical_crossentropy(targets, all_logits, from_logits=True)
            loss = _sum_over(ce, self.real_global)
            scaled = self.opt_c.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        self.opt_c.apply_gradients(zip(grads, variables))
        logits = all_logits[:n]
        hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
        metrics = {"guide_acc_real": _sum_over(hits, self.real_global)}
        if fake is not None:   # the share of generated images it tells apart from every real class
            caught = tf.equal(tf.argmax(all_logits[n:], axis=-1, output_type=tf.int32), generated)
            metrics["guide_caught_fake"] = _sum_over(caught, self.real_global)
        return metrics

    def _augment(self, images, key):
        probability = self.state["augment_p"] if self.adaptive else None
        return diff_augment(images, self.policies, key, probability)

    def _d_update(self, real, labels, z, key_real, key_fake, strength):
        """Real and fake go through D in separate calls: the minibatch-deviation feature is per batch.
        Returns the metrics and the generated images (the guide learns them too with `guide_fakes`)."""
        fake = tf.stop_gradient(self._generator_train([z, labels]))
        real_aug = self._augment(real, key_real)
        fake_aug = self._augment(fake, key_fake)
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real_out = self.discriminator([real_aug, labels], training=True)
            fake_out = self.discriminator([fake_aug, labels], training=True)
            if self.reference:
                losses, metrics = self._reference_d_losses(real_out, fake_out)
            else:
                real_score, fake_score = _score(real_out, strength), _score(fake_out, strength)
                losses, metrics = self._sngan_d_losses(real_score, fake_score, real_out[2], labels)
                if self.lecam:
                    losses["lecam"] = self.config.lecam_weight * lecam_penalty(
                        real_score, fake_score, self.state["lecam_real"], self.state["lecam_fake"], self.real_global)
                if self.config.r1_gamma > 0:
                    losses["r1"] = self._r1_penalty(real_aug, labels, strength)
            loss = tf.add_n(list(losses.values()))
            scaled = self.opt_d.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        self.opt_d.apply_gradients(zip(grads, variables))
        return metrics, fake

    def _g_update(self, z, labels, key, strength):
        variables = self.generator.trainable_variables
        gb = self.real_global * (2 if self.reference else 1)
        with tf.GradientTape() as tape:
            fake = self._generator_train([z, labels])
            output = self.discriminator([self._augment(fake, key), labels], training=True)
            if self.reference:
                loss = _sum_over(-tf.math.log(tf.clip_by_value(output, 1e-7, 1.0)), gb)
                metrics = {"g_loss": loss}
            else:
                logits = output[2]
                adversarial = _sum_over(-_score(output, strength), gb)
                ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
                loss = adversarial + strength * self.config.ac_weight * _sum_over(ce, gb)
                hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
                metrics = {"d_class_acc_fake": _sum_over(hits, gb)}
                if self.guide is not None:
                    guide_logits = self.guide(diff_augment(fake, GUIDE_POLICIES,
                                                           tf.random.experimental.stateless_fold_in(key, 7)),
                                              training=False)
                    guide_ce = keras.losses.sparse_categorical_crossentropy(labels, guide_logits, from_logits=True)
                    loss += strength * self.config.guide_weight * _sum_over(guide_ce, gb)
                    guide_hits = tf.equal(tf.argmax(guide_logits, axis=-1, output_type=tf.int32), labels)
                    metrics["guide_acc_fake"] = _sum_over(guide_hits, gb)
                if self.config.diversity_weight > 0:
                    ratio = self._pair_gaps(fake, z)
                    loss += self.config.diversity_weight * _sum_over(1.0 / (ratio + 1e-5), self.pairs_global)
                    metrics["g_diversity"] = _sum_over(ratio, self.pairs_global)
                metrics["g_loss"] = loss
            scaled = self.opt_g.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        self.opt_g.apply_gradients(zip(grads, variables))
        return metrics

    @staticmethod
    def _pair_gaps(fake, z):
        """Mode seeking (MSGAN, Mao et al. 2019): for each pair of images of one class drawn from two
        latents, the mean absolute difference of the images over that of the latents. The generator's loss
        grows as its inverse, so two latents may not give the same chest: the cure for a generator that
        draws one image per class (seen with the class guide at higher learning rates: within-class
        MS-SSIM 0.89 against 0.57 for real images)."""
        half = z.shape[0] // 2
        fake = tf.cast(fake, tf.float32)
        image_gap = tf.reduce_mean(tf.abs(fake[:half] - fake[half:2 * half]), axis=[1, 2, 3])
        latent_gap = tf.reduce_mean(tf.abs(z[:half] - z[half:2 * half]), axis=1)
        return image_gap / latent_gap

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
                   "d_class_acc_real": _sum_over(hits, gb), "d_sign_real": _sum_over(tf.sign(real_score), gb),
                   "d_score_real": _sum_over(real_score, gb), "d_score_fake": _sum_over(fake_score, gb)}
        return losses, metrics

    def _r1_penalty(self, real, labels, strength):
        with tf.GradientTape() as tape:
            tape.watch(real)
            score = tf.reduce_sum(_score(self.discriminator([real, labels], training=True), strength))
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

    def saved_generator(self):
        """The EMA generator as generator.keras holds it: computing in float32 whatever the training
        precision, so a run's generator gives the same pixels on any machine and a CPU without bfloat16
        does not emulate it (a bfloat16 export stays a choice, core/export/generator.py)."""
        return self.ema if self.precision == "float32" else with_dtype_policy(self.ema, "float32")

    # ---- state ------------------------------------------------------------------------------------
    def _groups(self):
        groups = {"g": self.generator.variables, "d": self.discriminator.variables, "ema": self.ema.variables,
                  "opt_g": self.opt_g.variables, "opt_d": self.opt_d.variables, "state": list(self.state.values())}
        if self.guide is not None:
            groups.update(guide=self.guide.variables, opt_c=self.opt_c.variables)
        return groups

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
                          for group, variables in self._groups().items()
                          if group != "state" or "state/0000" in archive.files}   # older runs had none
        except Exception as error:  # zip, npz, json and key errors all mean the same to the user
            raise UserError(f"{path}: corrupt or incomplete checkpoint ({type(error).__name__}: {error}); "
                            f"delete it to resume from an earlier one") from error
        for group, variables in self._groups().items():
            for variable, value in zip(variables, values.get(group, ())):
                if tuple(variable.shape) != value.shape:
                    name = getattr(variable, "path", variable.name)
                    raise UserError(f"{path}: checkpoint does not match this model "
                                    f"({name}: {value.shape} vs {tuple(variable.shape)})")
        for group, variables in self._groups().items():
            for variable, value in zip(variables, values.get(group, ())):
                variable.assign(value)
        return step, extra
