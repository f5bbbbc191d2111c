"""The engine's small-data machinery as specifications: LeCam, ADA, transitional conditioning, precision.

Regularisers are checked on fixed numbers; the stateful parts (ADA's probability, LeCam's anchors)
must survive a resume exactly; the precision choice must never crash on hardware that lacks it.
"""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from core.errors import UserError  # noqa: E402
from core.gan import engine as engine_module  # noqa: E402
from core.gan.augment import diff_augment  # noqa: E402
from core.gan.engine import (LR_FLOOR, condition_strength, cpu_supports_bf16, lecam_penalty, lr_scale,  # noqa: E402
                             resolve_precision)
from core.gan.runs import read_metrics  # noqa: E402
from core.gan.trainer import train  # noqa: E402
from tests.test_gan_trainer import synthetic_data, tiny_config  # noqa: E402


def test_lecam_penalty_on_fixed_numbers():
    real = tf.constant([[2.0], [0.5], [-1.0]])
    fake = tf.constant([[-3.0], [1.0], [0.0]])
    # anchors: a_real = 1.0, a_fake = -0.5
    # real term: relu(real - a_fake)^2 = 2.5^2, 1.0^2, 0      = 6.25 + 1 + 0 = 7.25
    # fake term: relu(a_real - fake)^2 = 4.0^2, 0, 1.0^2      = 16 + 0 + 1   = 17
    value = lecam_penalty(real, fake, tf.constant(1.0), tf.constant(-0.5), denominator=3)
    assert float(value) == pytest.approx((7.25 + 17.0) / 3)


def test_lecam_penalty_is_zero_when_scores_sit_between_the_anchors():
    value = lecam_penalty(tf.constant([[0.0], [0.2]]), tf.constant([[0.1], [0.3]]),
                          anchor_real=tf.constant(-1.0), anchor_fake=tf.constant(1.0), denominator=2)
    assert float(value) == 0.0


def test_condition_strength_ramps_from_unconditional_to_conditional():
    values = [float(condition_strength(step, start=10, ramp=20)) for step in (0, 9, 10, 20, 30, 100)]
    assert values == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    assert float(condition_strength(0, start=0, ramp=0)) == 1.0
    assert [float(condition_strength(s, start=5, ramp=0)) for s in (4, 5)] == [0.0, 1.0]


def test_learning_rates_hold_then_fall_linearly_to_a_tenth_and_stay():
    values = [float(lr_scale(step, start=100, steps=200)) for step in (0, 100, 200, 300, 10_000)]
    assert values == pytest.approx([1.0, 1.0, 1.0 - (1.0 - LR_FLOOR) / 2, LR_FLOOR, LR_FLOOR])
    assert LR_FLOOR == pytest.approx(0.1)
    assert float(lr_scale(10_000, start=0, steps=0)) == 1.0     # lr_decay_steps 0: constant rates


def test_falling_learning_rates_change_training_only_from_their_start_and_resume_exactly(tmp_path):
    """Steps are 0-based in the schedule: with start 2 over 4 steps, steps 1-3 train at full rate, 7-8 at a tenth."""
    data = synthetic_data()
    options = dict(lr_decay_start=2, lr_decay_steps=4, log_every=1, lr_g=2e-4, lr_d=4e-4)
    train(tiny_config(tmp_path / "straight", steps=8, **options), data=data)
    train(tiny_config(tmp_path / "split", steps=5, checkpoint_every=5, **options), data=data)
    train(tiny_config(tmp_path / "split", steps=8, resume=True, **options), data=data)
    train(tiny_config(tmp_path / "constant", steps=8, **{**options, "lr_decay_steps": 0}), data=data)
    straight, split, constant = (read_metrics(tmp_path / name / "metrics.jsonl")
                                 for name in ("straight", "split", "constant"))
    expected = [1.0, 1.0, 1.0, 0.775, 0.55, 0.325, 0.1, 0.1]
    assert [row["lr_scale"] for row in straight] == pytest.approx(expected)
    assert [row["lr_scale"] for row in split] == pytest.approx(expected)
    assert [row["lr_scale"] for row in constant] == [1.0] * 8
    loss = {name: [row["d_loss_real"] for row in rows] for name, rows in
            (("straight", straight), ("split", split), ("constant", constant))}
    assert loss["split"] == pytest.approx(loss["straight"], rel=1e-3)
    assert loss["constant"][:4] == pytest.approx(loss["straight"][:4], rel=1e-5)   # same until the rates fall
    assert loss["constant"][4:] != pytest.approx(loss["straight"][4:], rel=1e-5)


def test_augmentation_probability_zero_is_identity_and_one_is_always():
    x = tf.random.stateless_uniform((8, 16, 16, 1), [1, 2], -1.0, 1.0)
    seed = tf.constant([3, 4], tf.int64)
    policies = ("translation", "color")
    np.testing.assert_array_equal(diff_augment(x, policies, seed, tf.constant(0.0)).numpy(), x.numpy())
    always = diff_augment(x, policies, seed, tf.constant(1.0)).numpy()
    np.testing.assert_allclose(always, diff_augment(x, policies, seed).numpy())
    assert not np.allclose(always, x.numpy())
    half = diff_augment(x, ("color",), seed, tf.constant(0.5)).numpy()
    unchanged = [np.array_equal(half[i], x.numpy()[i]) for i in range(8)]
    assert 0 < sum(unchanged) < 8


def test_a_generator_at_condition_strength_zero_ignores_its_label():
    from core.gan.models import sngan_generator

    g = sngan_generator(n_classes=3, size=32, latent_dim=8, channels=4)
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    z = np.repeat(z[:1], 3, axis=0)
    labels = np.array([0, 1, 2], np.int32)
    conditional = g([z, labels], training=False).numpy()
    assert not np.allclose(conditional[0], conditional[1])
    g.get_layer("class_embedding").strength.assign(0.0)
    unconditional = g([z, labels], training=False).numpy()
    np.testing.assert_allclose(unconditional[0], unconditional[1], atol=1e-6)
    np.testing.assert_allclose(unconditional[0], unconditional[2], atol=1e-6)


def test_cpu_flags_decide_bfloat16_support(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor : 0\nflags : fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    assert cpu_supports_bf16(str(amx)) and not cpu_supports_bf16(str(plain))
    assert not cpu_supports_bf16(str(tmp_path / "missing"))


@pytest.mark.parametrize("gpu, bf16, asked, expected, notice", [
    (False, False, "auto", "float32", False),
    (False, True, "auto", "mixed_bfloat16", False),    # measured not to cost quality (resolve_precision)
    (True, False, "auto", "mixed_float16", False),
    (False, False, "mixed_bfloat16", "float32", True),
    (False, True, "mixed_bfloat16", "mixed_bfloat16", False),
    (False, True, "mixed_float16", "float32", True),
    (True, False, "mixed_float16", "mixed_float16", False),
    (False, False, "float32", "float32", False),
])
def test_precision_follows_the_hardware_and_falls_back_with_a_notice(monkeypatch, gpu, bf16, asked, expected,
                                                                     notice):
    monkeypatch.setattr(engine_module, "has_cuda_gpu", lambda: gpu)
    monkeypatch.setattr(engine_module, "cpu_supports_bf16", lambda: bf16)
    policy, message = resolve_precision(asked)
    assert policy == expected
    assert (message is not None) == notice
    if notice:
        assert asked in message and "float32" in message and "\n" not in message


def test_an_unsupported_precision_trains_in_float32_and_says_so(tmp_path, monkeypatch):
    from tests.test_gan_trainer import Recorder

    monkeypatch.setattr(engine_module, "cpu_supports_bf16", lambda: False)
    recorder = Recorder()
    summary = train(tiny_config(tmp_path / "run", steps=1, precision="mixed_float16"), recorder,
                    data=synthetic_data())
    assert summary.step == 1
    assert any("mixed_float16" in line and "float32" in line for line in recorder.logs)


@pytest.mark.parametrize("precision", [
    "float32",
    pytest.param("mixed_bfloat16", marks=pytest.mark.skipif(not cpu_supports_bf16(),
                                                            reason="this CPU has no native bfloat16")),
])
def test_adaptive_augmentation_and_lecam_state_resume_exactly(tmp_path, precision):
    """ADA's probability and LeCam's anchors live in the checkpoint: split run == straight run, in
    bfloat16 too (the three runs share a process: the engine's cleared Keras session keeps it exact)."""
    data = synthetic_data()
    # at the usual GAN learning rates D gets ahead of G on these bars within 10 steps, so p moves; without
    # the guide, whose extra gradients amplify last-bit differences past the loss tolerance within 10 steps
    # (the guide's own exact resume is tests/test_gan_guide.py's)
    options = dict(ada_target=0.6, ada_kimg=0.05, lecam_weight=0.3, augment="translation,color,cutout",
                   lr_g=2e-4, lr_d=4e-4, guide_weight=0.0, precision=precision)
    train(tiny_config(tmp_path / "straight", steps=10, **options), data=data)
    train(tiny_config(tmp_path / "split", steps=6, checkpoint_every=3, **options), data=data)
    train(tiny_config(tmp_path / "split", steps=10, resume=True, **options), data=data)
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    split = read_metrics(tmp_path / "split" / "metrics.jsonl")
    p = [row["augment_p"] for row in straight]
    assert len(set(p)) > 1                                 # the probability moved during the run
    assert [row["augment_p"] for row in split] == pytest.approx(p, abs=1e-6)
    assert [row["d_loss_real"] for row in split] == pytest.approx([r["d_loss_real"] for r in straight], rel=1e-3)


def test_adaptive_augmentation_raises_p_while_the_discriminator_wins(tmp_path):
    """D is ahead on real images early on (r_t > target): p must climb from 0."""
    rows_config = tiny_config(tmp_path / "run", steps=12, ada_target=0.05, ada_kimg=0.06)
    train(rows_config, data=synthetic_data())
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    signs = [2 * row["d_acc_real"] - 1 for row in rows]
    p = [row["augment_p"] for row in rows]
    assert p[0] == 0.0 and p[-1] > 0.0
    assert np.mean(signs) > 0.05


@pytest.mark.parametrize("overrides, problem", [
    ({"lecam_weight": -1.0}, "--lecam-weight"), ({"ada_target": 1.0}, "--ada-target"), ({"ada_kimg": 0.0}, "--ada-kimg"),
    ({"cond_ramp": -1}, "--cond-start and --cond-ramp"), ({"cond_start": 5, "latent_blocks": False}, "--latent-blocks"),
    ({"lr_decay_steps": -1}, "--lr-decay-steps"), ({"lr_decay_start": -5}, "--lr-decay-start"),
])
def test_bad_quality_options_are_user_errors(tmp_path, overrides, problem):
    with pytest.raises(UserError, match=problem):
        tiny_config(tmp_path / "run", **overrides).validate()


@pytest.mark.slow
def test_bfloat16_and_float32_runs_save_float32_generators_that_load_safely_and_export_alike(tmp_path, monkeypatch):
    """A bfloat16 run's generator.keras computes in float32, so it gives the same pixels on any machine."""
    import json

    import cv2

    from core.export.export import ExportConfig, export, regenerate
    from core.export.generator import load_generator

    monkeypatch.setattr(engine_module, "cpu_supports_bf16", lambda: True)   # run bfloat16 even without AMX
    data = synthetic_data()
    listings = []
    for precision in ("float32", "mixed_bfloat16"):
        run, out = tmp_path / precision, tmp_path / f"export_{precision}"
        train(tiny_config(run, steps=2, precision=precision), data=data)
        generator = load_generator(run)                       # safe_mode=True inside
        policies = {layer.dtype_policy.name for layer in generator.model.layers}
        assert policies == {"float32"}
        export(ExportConfig(run=str(run), out=str(out), counts={"Effusion": 3, "Nodule": 2}, seed=1),
               demographics=_demographics(len(data.classes)))
        manifest = json.loads((out / "manifest.json").read_text())
        assert [entry["label"] for entry in manifest["images"]] == [1, 1, 1, 2, 2]
        for entry in manifest["images"]:
            image = cv2.imread(str(out / "images" / entry["image"]), cv2.IMREAD_UNCHANGED)
            assert image.shape == (32, 32) and image.dtype == np.uint8
            np.testing.assert_array_equal(regenerate(out, entry["image"]), image)
        names = (str(p.relative_to(out)).replace(generator.short_hash, "HASH") for p in out.rglob("*"))
        listings.append(sorted(names))   # file names carry the model's hash, the layout is the same
    assert listings[0] == listings[1]


def _demographics(n_classes: int):
    from core.export.export import Demographics

    labels = np.arange(n_classes).repeat(2)
    return Demographics(age=np.full(len(labels), 50), sex=np.array(["M", "F"] * n_classes),
                        view=np.array(["PA"] * len(labels)), labels=labels, max_patient_id=100)
