"""The training loop as a specification: both networks learn, runs resume exactly, stop and NaN are safe,
checkpoints are atomic, bad input is a UserError. Tiny models (32 px, 8 channels) on synthetic arrays."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from core.errors import UserError
from core.gan.config import TrainConfig
from core.gan.batches import TrainingData, sample_indices
from core.atomic import atomic_write_bytes
from core.gan.runs import read_metrics
from core.gan.trainer import TrainingDiverged, train
from core.jobs import Cancelled, Job

REQUIRED_COLUMNS = {"step", "epoch", "d_loss_real", "d_loss_fake", "g_loss", "d_acc_real", "d_acc_fake",
                    "images_per_s", "elapsed_s"}


def synthetic_data(n_per_class=6, classes=("Atelectasis", "Effusion", "Nodule"), size=32) -> TrainingData:
    """Class k is a bright bar at a class-specific height on noise: easy to tell apart, cheap to make."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k in range(len(classes)):
        for _ in range(n_per_class):
            image = rng.integers(0, 60, (size, size), dtype=np.uint8)
            row = (k + 1) * size // (len(classes) + 1)
            image[row - 2:row + 2] = 220
            images.append(image)
            labels.append(k)
    return TrainingData(np.stack(images), np.array(labels, np.int32), list(classes), source="synthetic")


def tiny_config(run, **overrides) -> TrainConfig:
    """A run of the trainer's mechanics: without the class guide and mode seeking, whose own tests
    (test_gan_guide.py, test_gan_diversity.py, the mirrored test below) switch them on; each costs
    a few seconds of tracing per run, which the many runs here would pay ~40 times."""
    values = dict(run=str(run), size=32, batch=6, steps=4, guide_weight=0.0, guide_steps=4, diversity_weight=0.0,
                  channels=8, latent_dim=16, log_every=1, checkpoint_every=100, seed=3,
                  classes=["Atelectasis", "Effusion", "Nodule"])
    values.update(overrides)
    return TrainConfig(**values)


class Recorder(Job):
    """A job that keeps every event the run streams (what the CLI prints and the app plots)."""

    def __init__(self):
        super().__init__(on_event=self._keep)
        self.rows, self.samples, self.logs = [], [], []

    def _keep(self, kind, payload):
        if kind == "metrics":
            self.rows.append(payload)
        elif kind == "samples":
            self.samples.append((payload.step, payload.grid.shape, payload.path))
        elif kind == "log":
            self.logs.append(payload)


def _weights(path):
    return keras.models.load_model(path, safe_mode=True).get_weights()


def test_a_run_writes_config_metrics_samples_checkpoint_generator_and_tensorboard(tmp_path):
    import tensorflow as tf

    recorder = Recorder()
    summary = train(tiny_config(tmp_path / "run", sample_every=2), job=recorder, data=synthetic_data())
    run = tmp_path / "run"
    assert summary.step == 4 and not summary.stopped
    assert json.loads((run / "config.json").read_text())["arch"] == "sngan"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows == recorder.rows
    assert REQUIRED_COLUMNS <= set(rows[0])
    assert (run / "checkpoints" / "step_0000004.npz").exists()
    step, shape, path = recorder.samples[-1]
    assert path == run / "samples" / "step_0000004.png" and path.exists()
    assert shape[0] == 3 * 32 and shape[1] > 8 * 32       # one row per class, plus a name margin
    generator = keras.models.load_model(run / "generator.keras", safe_mode=True)
    out = generator.predict([np.zeros((2, 16), np.float32), np.array([0, 2], np.int32)], verbose=0)
    assert out.shape == (2, 32, 32, 1) and out.dtype == np.float32 and np.abs(out).max() <= 1.0
    from core.export.generator import load_generator

    loaded = load_generator(run)                         # the export side reads the same run folder
    assert loaded.classes == ["Atelectasis", "Effusion", "Nodule"] and loaded.latent_dim == 16
    tags = {}
    for path in (run / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss/g_loss"] == [1, 2, 3, 4] and tags["accuracy/d_acc_real"] == [1, 2, 3, 4]
    assert tags["samples/one row per class"] == [2, 4]
    assert "run/config" in tags


def test_stop_request_ends_after_the_current_step_and_saves(tmp_path):
    def stop_at_two(kind, payload):
        if kind == "samples" and payload.step == 2:
            job.request_stop()

    job = Job(on_event=stop_at_two)
    with pytest.raises(Cancelled) as stopped:
        train(tiny_config(tmp_path / "run", steps=50, log_every=10, sample_every=2), job=job, data=synthetic_data())
    summary = stopped.value.result
    assert summary.stopped and summary.step == 2 and summary.reason == "stopped"
    assert [row["step"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [2]  # partial interval kept
    assert (tmp_path / "run" / "checkpoints" / "step_0000002.npz").exists()
    assert (tmp_path / "run" / "generator.keras").exists()


def test_nan_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    from core.gan.engine import GanEngine

    real_step = GanEngine.train_step

    def poisoned(self, inputs, step):
        values = real_step(self, inputs, step)
        return {**values, "g_loss": float("nan")} if step >= 3 else values

    monkeypatch.setattr(GanEngine, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="step 4.*step_0000002"):
        train(tiny_config(tmp_path / "run", steps=6, checkpoint_every=2), data=synthetic_data())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.npz")) == ["step_0000002.npz"]
    assert not (tmp_path / "run" / "generator.keras").exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "step_0000001.npz"
    target.write_bytes(b"good")
    import os

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001.npz"]


def test_balanced_sampling_gives_every_class_its_share():
    by_class = [np.arange(0, 50), np.arange(50, 52), np.arange(52, 60)]
    rows = sample_indices(by_class, 60, 30, balanced=True, key=(0, 0, 7))
    counts = np.bincount(np.searchsorted([50, 52], rows, side="right"), minlength=3)
    assert counts.tolist() == [10, 10, 10]
    np.testing.assert_array_equal(rows, sample_indices(by_class, 60, 30, balanced=True, key=(0, 0, 7)))


@pytest.mark.parametrize("data, problem", [
    (TrainingData(np.zeros((8, 32, 32), np.uint8), np.zeros(8, np.int32), ["Mass"]), "at least 2 classes"),
    (TrainingData(np.zeros((8, 32, 32), np.uint8), np.zeros(8, np.int32), ["Mass", "Nodule"]),
     "no training images for class.*Nodule"),
    (TrainingData(np.zeros((4, 32, 32), np.uint8), np.array([0, 1, 0, 1], np.int32), ["Mass", "Nodule"]),
     "larger than the 4"),
    (TrainingData(np.zeros((8, 64, 64), np.uint8), np.array([0, 1] * 4, np.int32), ["Mass", "Nodule"]),
     "64 px but --size is 32"),
])
def test_unusable_data_is_a_user_error(tmp_path, data, problem):
    with pytest.raises(UserError, match=problem):
        train(tiny_config(tmp_path / "run", classes=list(data.classes)), data=data)


def test_data_with_other_classes_than_the_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="differ from the config"):
        train(tiny_config(tmp_path / "run", classes=["Mass", "Nodule", "Effusion"]), data=synthetic_data())


def test_unwritable_run_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the run folder"):
        train(tiny_config(blocker / "run"), data=synthetic_data())


def test_bad_options_are_user_errors(tmp_path):
    for overrides, problem in [({"arch": "gan"}, "--arch"), ({"size": 100}, "--size"),
                               ({"augment": "rotate"}, "rotate"), ({"arch": "reference", "size": 64}, "128")]:
        with pytest.raises(UserError, match=problem):
            tiny_config(tmp_path / "run", **overrides).validate()


@pytest.mark.parametrize("arch, size", [("sngan", 32), ("reference", 128)])
def test_one_step_changes_every_weight_of_both_networks(arch, size):
    """The notebook way under Keras 3 silently froze D; here every trainable variable of G and D moves."""
    import tensorflow as tf

    from core.gan.engine import GanEngine

    config = TrainConfig(run="unused", arch=arch, size=size, batch=6, channels=8, latent_dim=16)
    engine = GanEngine(config, n_classes=3)
    real = 3 if arch == "reference" else 6
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (real, size, size), dtype=np.uint8))
    labels = tf.constant(np.arange(real) % 3, tf.int32)
    networks = {"G": engine.generator, "D": engine.discriminator}
    before = {name: [v.numpy().copy() for v in net.trainable_variables] for name, net in networks.items()}
    engine.train_step((images, labels), 0)
    for name, net in networks.items():
        frozen = [v.path for v, old in zip(net.trainable_variables, before[name]) if np.array_equal(v.numpy(), old)]
        assert frozen == [], f"{name} variables not trained: {frozen}"


def test_mixed_bfloat16_trains_and_exports_a_float32_generator(tmp_path):
    summary = train(tiny_config(tmp_path / "run", steps=2, precision="mixed_bfloat16"), data=synthetic_data())
    assert all(np.isfinite(v) for k, v in summary.metrics.items() if k.startswith(("d_", "g_")))
    generator = keras.models.load_model(tmp_path / "run" / "generator.keras", safe_mode=True)
    out = generator.predict([np.zeros((1, 16), np.float32), np.array([1], np.int32)], verbose=0)
    assert out.dtype == np.float32 and out.shape == (1, 32, 32, 1)
    assert keras.mixed_precision.global_policy().name == "float32"   # the policy did not leak


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.gan.engine import make_strategy
from core.gan.trainer import train
from tests.test_gan_trainer import synthetic_data, tiny_config
summary = train(tiny_config(sys.argv[1], strategy="mirrored", steps=2, batch=6, guide_weight=1.0, guide_steps=3,
                            diversity_weight=1.0), data=synthetic_data())
print(json.dumps({"replicas": make_strategy("mirrored").num_replicas_in_sync, "step": summary.step}))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Logical devices must be configured before TensorFlow starts, hence a fresh interpreter. The run uses
    the class guide and mode seeking too, so their updates and metrics are shown to work across replicas."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "run")], cwd=repo,
                            capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"replicas": 2, "step": 2}
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    # losses are summed over replicas and divided by the global batch. Before D has learned anything,
    # relu(1 - s) + relu(1 + s) = 2 for |s| <= 1; averaging per replica and then summing would give 4.
    assert 1.5 < first["d_loss_real"] + first["d_loss_fake"] < 3.0
    assert 0.0 <= first["d_acc_real"] <= 1.0 and first["d_acc_real"] * 6 == pytest.approx(round(first["d_acc_real"] * 6), abs=1e-3)
    assert (tmp_path / "run" / "generator.keras").exists()
    assert first["guide_acc_real"] * 6 == pytest.approx(round(first["guide_acc_real"] * 6), abs=1e-3)
    assert first["g_diversity"] > 0     # one mode-seeking pair per replica, averaged over both


def test_multiworker_non_chief_workers_write_their_own_folder(monkeypatch, tmp_path):
    from core.gan.trainer import _worker_run_folder

    config = tiny_config(tmp_path / "run", strategy="multiworker")
    cluster = {"worker": ["a:1", "b:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert _worker_run_folder(config) == str(tmp_path / "run")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert _worker_run_folder(config) == str(tmp_path / "run" / "worker_1")


def test_r1_penalty_and_cutout_train(tmp_path):
    summary = train(tiny_config(tmp_path / "run", steps=1, r1_gamma=1.0, augment="translation,cutout,color"),
                    data=synthetic_data())
    assert summary.step == 1 and all(np.isfinite(v) for k, v in summary.metrics.items() if k.startswith("d_"))


def test_weights_that_overflow_while_losses_stay_finite_are_caught_before_saving(tmp_path, monkeypatch):
    from core.gan.engine import GanEngine

    real_step = GanEngine.train_step

    def overflow(self, inputs, step):
        values = real_step(self, inputs, step)
        if step >= 2:
            weight = self.ema.weights[0]
            weight.assign(np.full(weight.shape, np.inf, dtype=np.float32))
        return values

    monkeypatch.setattr(GanEngine, "train_step", overflow)
    with pytest.raises(TrainingDiverged, match="step 3.*EMA generator.*step_0000002"):
        train(tiny_config(tmp_path / "run", steps=6, checkpoint_every=2), data=synthetic_data())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.npz")) == ["step_0000002.npz"]
    assert not (tmp_path / "run" / "generator.keras").exists()


@pytest.mark.parametrize("field, value, problem", [
    ("batch", "16", "batch must be a whole number"), ("ema_decay", "0.9", "ema_decay must be a number"),
    ("channels", 0, "channels must be between"), ("latent_dim", -5, "latent-dim must be between"),
    ("steps", 1e100, "steps must be a whole number"), ("threads", 1_000_000, "threads must be between"),
    ("classes", ["Mass", "Lesion"], "unknown label.*Lesion"), ("resume", "yes", "resume must be true or false"),
    ("lr_g", float("inf"), "lr_g must be a finite number"),
])
def test_a_hostile_config_json_is_refused_by_field_name(tmp_path, field, value, problem):
    path = tmp_path / "config.json"
    saved = tiny_config(tmp_path / "run").to_json()
    path.write_text(json.dumps({**saved, field: value}))
    with pytest.raises(UserError, match=problem) as error:
        TrainConfig.load(path)
    assert str(path) in str(error.value)


def test_a_deeply_nested_config_json_is_refused_without_a_recursion_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(UserError, match="nested too deeply"):
        TrainConfig.load(path)


