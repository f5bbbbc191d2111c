"""The class guide (core/gan/guide.py): it learns the classes before the GAN starts, steers the generator,
survives a stop or a kill in either stage with an exact resume, and old runs without it still load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from core.gan.config import TrainConfig
from core.gan.runs import read_metrics
from core.gan.trainer import train
from core.jobs import Cancelled
from tests.test_gan_trainer import Recorder, synthetic_data, tiny_config


def guided(run, **overrides):
    return tiny_config(run, **{"guide_weight": 1.0, "guide_steps": 6, **overrides})


def assert_same_state(a, b, step):
    """Every array of the two runs' checkpoints at `step` (networks, EMA, guide, optimisers) equal to float32
    rounding: the runs are built in one process, so their layers get other names, and TensorFlow may then
    sum a gradient with many consumers (the class embedding) in another order: last-bit differences that a few
    steps grow to ~1e-4 of an array's largest value in Adam's moments. A guide warm-up done twice or skipped
    moves the guide's weights by about its learning rate (1e-3), far beyond this."""
    name = f"checkpoints/step_{step:07d}.npz"
    with np.load(a / name) as x, np.load(b / name) as y:
        assert x.files == y.files and any(key.startswith("guide/") for key in x.files)
        for key in x.files:
            if key != "extra":
                scale = float(np.abs(y[key]).max()) if y[key].size else 0.0
                np.testing.assert_allclose(x[key], y[key], rtol=1e-4, atol=1e-5 * scale, err_msg=key)
        assert json.loads(str(x["extra"]))["guide_done"] == json.loads(str(y["extra"]))["guide_done"]


def test_the_guide_learns_the_classes_first_and_the_generator_is_scored_by_it(tmp_path):
    job = Recorder()
    reports = []
    job._on_progress = lambda progress: reports.append((progress.stage, progress.done, progress.total))
    job._min_interval = 0.0
    train(guided(tmp_path / "run", guide_steps=150, steps=3), job=job, data=synthetic_data(n_per_class=12))
    guide = [(done, total) for stage, done, total in reports if stage == "guide"]
    assert guide[-1] == (150, 150) and guide == sorted(guide)
    stages = [stage for stage, _, _ in reports]
    assert stages.index("guide") < stages.index("training")           # warm-up first, then the GAN
    learned = [line for line in job.logs if line.startswith("class guide:")]
    accuracy = int(learned[0].split(" puts ")[1].split("%")[0])
    assert accuracy >= 80, learned                                     # three easy classes, chance 33%
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert {"guide_acc_real", "guide_acc_fake"} <= set(rows[0])


def test_without_a_guide_the_run_has_no_guide_stage_or_metrics(tmp_path):
    job = Recorder()
    train(tiny_config(tmp_path / "run", steps=2, guide_weight=0.0), job=job, data=synthetic_data())
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert "guide_acc_fake" not in rows[0] and not any(line.startswith("class guide") for line in job.logs)


def test_a_stop_during_the_warm_up_saves_step_0_and_the_resume_finishes_the_warm_up_exactly(tmp_path):
    data = synthetic_data()
    job = Recorder()

    def stop_after_two(progress):
        if progress.stage == "guide" and progress.done == 2:
            job.request_stop()

    job._on_progress, job._min_interval = stop_after_two, 0.0
    with pytest.raises(Cancelled) as stopped:
        train(guided(tmp_path / "split", steps=3), job=job, data=data)
    assert stopped.value.result.step == 0
    assert (tmp_path / "split" / "checkpoints" / "step_0000000.npz").exists()
    assert read_metrics(tmp_path / "split" / "metrics.jsonl") == []
    train(guided(tmp_path / "split", steps=3, resume=True), data=data)
    train(guided(tmp_path / "straight", steps=3), data=data)
    assert_same_state(tmp_path / "straight", tmp_path / "split", 3)


def test_the_time_budget_includes_the_warm_up(tmp_path, monkeypatch):
    import core.gan.trainer as trainer
    from core.gan.engine import GanEngine

    clock = {"now": 1000.0}
    real_step = GanEngine.guide_pretrain_step

    def slow_guide_step(self, inputs, step):     # every warm-up step "takes" 20 s
        clock["now"] += 20.0
        return real_step(self, inputs, step)

    monkeypatch.setattr(GanEngine, "guide_pretrain_step", slow_guide_step)
    monkeypatch.setattr(trainer.time, "monotonic", lambda: clock["now"])
    job = Recorder()
    summary = train(guided(tmp_path / "run", guide_steps=10, steps=5, minutes=1.0), job=job, data=synthetic_data())
    assert summary.reason == "time budget" and summary.step == 1      # 3 warm-up steps used the minute
    assert any(line.startswith("class guide: 3 of 10") for line in job.logs), job.logs


def test_guide_options_are_checked_and_old_configs_load_without_a_guide(tmp_path):
    for field, value in (("guide_weight", -1.0), ("guide_steps", -5), ("guide_weight", "lots")):
        with pytest.raises(UserError, match=field.replace("_", "-") if value != "lots" else field):
            config = tiny_config(tmp_path / "run", **{field: value})
            config.validate()
    saved = tiny_config(tmp_path / "old").to_json()
    del saved["guide_weight"], saved["guide_steps"], saved["guide_fakes"], saved["lr_decay_steps"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    old = TrainConfig.load(path)
    assert old.guide_weight == 0.0 and old.guide_fakes is False
    assert old.lr_decay_steps == 0          # nor learning rates that fall: an old run resumes its own recipe


def test_a_guide_that_sees_generated_images_learns_them_as_one_more_class_and_resumes_exactly(tmp_path):
    """Also the exact resume of a guided run (guide_fakes is the default) once the GAN has started."""
    data = synthetic_data()
    train(guided(tmp_path / "straight", steps=10, guide_fakes=True, log_every=5), data=data)
    train(guided(tmp_path / "split", steps=5, guide_fakes=True), data=data)
    train(guided(tmp_path / "split", steps=10, guide_fakes=True, resume=True), data=data)
    assert_same_state(tmp_path / "straight", tmp_path / "split", 10)
    with np.load(tmp_path / "straight" / "checkpoints" / "step_0000010.npz") as saved:
        logits = [saved[key] for key in saved.files if key.startswith("guide/")][-1]
    assert logits.shape == (3 + 1,)                                    # three classes and "generated"
    caught = [row["guide_caught_fake"] for row in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    assert caught[-1] > 0.5, caught                     # a tiny generator's images are easy to tell apart


@pytest.mark.parametrize("fold", [2, 4])
def test_a_folded_guide_has_the_shape_of_a_smaller_images_guide_and_every_pixel_reaches_its_logits(fold):
    import tensorflow as tf

    from core.gan.guide import build_guide
    folded, small = build_guide(64, 4, fold=fold), build_guide(64 // fold, 4)
    assert [tuple(layer.output.shape[1:]) for layer in folded.layers[1:]] == \
        [tuple(layer.output.shape[1:]) for layer in small.layers[1:]]
    image = tf.Variable(tf.random.stateless_uniform([2, 64, 64, 1], [1, 2], -1.0, 1.0))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(folded(image))
    reach = np.abs(tape.gradient(total, image).numpy())
    assert (reach > 0).all(), f"{(reach == 0).sum()} pixels never reach the guide's logits"


def test_guide_folding_is_automatic_by_size_checked_and_old_runs_keep_an_unfolded_guide(tmp_path):
    sizes = {size: tiny_config(tmp_path / "run", size=size).guide_fold_factor() for size in (32, 64, 128, 256)}
    assert sizes == {32: 1, 64: 1, 128: 2, 256: 4}
    assert tiny_config(tmp_path / "run", size=128, guide_fold=1).guide_fold_factor() == 1
    for value, why in ((3, "must be one of"), (4, "too coarse")):   # not a folding; 8 px left of 32 px
        with pytest.raises(UserError, match=f"--guide-fold.*{why}"):
            tiny_config(tmp_path / "run", guide_fold=value).validate()
    saved = tiny_config(tmp_path / "old", size=128).to_json()
    del saved["guide_fold"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    assert TrainConfig.load(path).guide_fold_factor() == 1


def test_a_run_trains_and_checkpoints_the_folded_guide(tmp_path):
    train(guided(tmp_path / "run", steps=2, guide_fold=2), data=synthetic_data())
    with np.load(tmp_path / "run" / "checkpoints" / "step_0000002.npz") as saved:
        kernels = [saved[key].shape for key in saved.files if key.startswith("guide/") and saved[key].ndim == 4]
    assert kernels[0] == (6, 6, 1, 16)      # the first block reads 6x6 windows at stride 4
