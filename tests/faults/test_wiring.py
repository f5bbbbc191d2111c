"""Issue 11 faults whose fix lives in the tasks (export, train, evaluate, the run config): the pieces of
`core/locks.py`, `core/cleanup.py` and `core/atomic.py` as the tasks use them.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.locks import hold_lock

from tests.faults.conftest import assert_one_line_error, cli

# ---- export (generate): a fake generator, so no TensorFlow is needed

class _Output:
    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


def fake_generator(run_dir: Path, size: int = 64):
    from core.export.generator import Generator

    rng = np.random.default_rng(0)
    return Generator(run_dir=run_dir, model=None, config={}, classes=["Mass", "Nodule"], latent_dim=4, size=size,
                     sha256="0" * 64, batch_size=8,
                     _predict=lambda z, y: _Output(rng.uniform(-1, 1, (len(y), size, size, 1)).astype(np.float32)))


def run_export(tmp_path: Path, out: Path, counts: dict, force: bool = False, size: int = 64):
    from core.export.export import Demographics, ExportConfig, export

    demographics = Demographics(age=np.array([50, 60]), sex=np.array(["M", "F"]), view=np.array(["PA", "AP"]),
                                labels=np.array([0, 1]))
    config = ExportConfig(run=str(tmp_path), out=str(out), counts=counts, force=force, size=size)
    return export(config, demographics=demographics, generator=fake_generator(tmp_path, size))


def earlier_export(folder: Path) -> Path:
    from core.export.export import EXPORT_FORMAT, MANIFEST_NAME

    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": EXPORT_FORMAT, "note": "the earlier export"}))
    return folder


def test_an_export_target_in_use_is_refused(tmp_path):
    out = tmp_path / "export"
    with hold_lock(out, "export target"):
        with pytest.raises(UserError, match=f"{out} is in use by process {os.getpid()}"):
            run_export(tmp_path, out, {"Mass": 2})


def test_an_export_swap_cut_by_a_kill_is_restored_at_the_next_start(tmp_path):
    """--force was killed between its two renames: the target is gone, the old copy is in `.export.old-*`.
    The next export restores it first thing, even when that export then stops on a bad option."""
    out = tmp_path / "export"
    earlier_export(tmp_path / ".export.old-1a2b")
    (tmp_path / ".export.partial-3c4d").mkdir()  # a killed export's unfinished folder
    with pytest.raises(UserError, match="nothing to export"):
        run_export(tmp_path, out, {"Mass": 0}, force=True)
    assert json.loads((out / "manifest.json").read_text())["note"] == "the earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_export_on_a_full_disk_is_one_line_naming_the_target_and_leaves_nothing(tmp_path, small_disk):
    disk = small_disk.make("1m")
    out = disk / "export"
    with pytest.raises(UserError, match=f"{out}.*no space left on the disk"):
        run_export(tmp_path, out, {"Mass": 40, "Nodule": 40}, size=256)  # 80 noise PNGs of 65 KB
    assert list(disk.iterdir()) == []


def test_an_export_into_read_only_storage_is_one_line(tmp_path, small_disk):
    disk = small_disk.make("1m")
    small_disk.read_only(disk)
    with pytest.raises(UserError, match=f"{disk / 'export'}.*read-only"):
        run_export(tmp_path, disk / "export", {"Mass": 2})


# ---- the run config (train --resume, generate)

HOSTILE_CONFIG = {
    "batch as text": {"batch": "16"},
    "ema_decay as text": {"ema_decay": "0.9"},
    "no channels": {"channels": 0},
    "negative latent": {"latent_dim": -5},
    "steps 1e100": {"steps": 1e100},
    "a million threads": {"threads": 1_000_000},
    "lr 1e15": {"lr_g": 1e15},
}


@pytest.mark.parametrize("values", HOSTILE_CONFIG.values(), ids=HOSTILE_CONFIG.keys())
def test_a_hostile_config_json_is_refused_naming_the_field(tmp_path, values):
    from core.gan.config import TrainConfig

    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TrainConfig(run=str(tmp_path)).to_json(), **values}))
    name = next(iter(values))
    with pytest.raises(UserError, match=f"{name}|--{name.replace('_', '-')}"):
        TrainConfig.load(path)


def test_a_200k_deep_config_json_is_refused(tmp_path):
    from core.gan.config import TrainConfig

    path = tmp_path / "config.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(UserError, match=str(path)):
        TrainConfig.load(path)


def test_resume_compares_runs_by_content_not_spelling(tmp_path, monkeypatch):
    from core.gan.config import TrainConfig

    run = tmp_path / "run"
    saved = TrainConfig(run=str(run))
    monkeypatch.chdir(tmp_path)
    for spelling in (f"{run}/", "run", "./run/"):
        assert saved.differences(TrainConfig(run=spelling)) == [], spelling
    assert saved.differences(TrainConfig(run=str(run), lr_g=1e-5, lr_d=2e-5)) == [], \
        "the divergence message says 'lower the learning rates and resume': resume must allow it"


# ---- train: the run folder lock and its leftovers

@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A 32 px cache with training images of every class (the shared 3-per-class phantoms, split by
    patient, can leave a class without any)."""
    from core.data.cache import PrepareConfig, prepare
    from core.data.phantoms import write_demo_dataset

    root = write_demo_dataset(tmp_path_factory.mktemp("phantoms8") / "nih", per_class=8, size=64, seed=3)
    return prepare(PrepareConfig(data=str(root), out=str(tmp_path_factory.mktemp("c") / "c32"), size=32)).path


@pytest.mark.slow
def test_a_second_train_on_a_run_folder_is_refused_and_the_next_cleans_the_leftovers(tmp_path, tiny_cache):
    """Two `train` processes on one run folder: the second is refused at once and touches nothing. The
    next start that holds the folder removes the killed run's temporaries before anything else (here it
    then stops on a size that does not match the cache, so no training is needed to see it)."""
    run = tmp_path / "run"
    leftovers = [run / ".generator.tmp.keras", run / "checkpoints" / ".step_0000500.npz.k2j4.tmp",
                 run / ".config.json.x1.tmp"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    args = ("train", "--data", tiny_cache, "--run", run, "--steps", "1", "--batch", "4", "--channels", "4",
            "--threads", "1", "--guide-steps", "4")
    with hold_lock(run, "run folder"):
        try:
            done = cli(*args, "--size", "32", timeout=40)  # refused at once; before wiring it trains
        except subprocess.TimeoutExpired:
            pytest.fail("the second train did not stop: it is training on a folder in use")
        assert done.returncode == 2 and f"{run} is in use by process {os.getpid()}" in done.stderr
        assert all(path.exists() for path in leftovers), "removed another process's files"
    done = cli(*args, "--size", "64", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not any(path.exists() for path in leftovers)


def test_a_second_resume_is_refused_before_it_reads_or_writes_anything(tmp_path):
    """Two `train --resume` on one run: the second stops at the lock (no TensorFlow, no file touched)."""
    from core.gan.config import TrainConfig
    from core.gan.trainer import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{ not read while the run is in use")
    with hold_lock(run, "run folder"):
        with pytest.raises(UserError, match=f"{run} is in use by process {os.getpid()}"):
            train(TrainConfig(run=str(run), data=str(tmp_path / "cache"), resume=True))
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


class _Weights:
    weights: list = []


class _FakeEngine:
    """What the trainer's save helpers use of a GanEngine: weights to check, state bytes, `saved_generator().save`."""

    def __init__(self, size: int):
        self.generator = self.discriminator = _Weights()
        self.guide = None
        self.size = size
        engine = self

        class Ema(_Weights):
            @staticmethod
            def save(path):
                Path(path).write_bytes(b"k" * engine.size)

        self.ema = Ema()

    def saved_generator(self):
        return self.ema

    def state_bytes(self, step: int, extra: dict) -> bytes:
        return b"s" * self.size


def _saving_run(run_dir: Path):
    from core.gan.config import TrainConfig
    from core.gan.trainer import _Run
    from core.jobs import Job

    run = _Run(TrainConfig(run=str(run_dir)), Job())
    run.paths.make()
    return run


@pytest.mark.parametrize("what", ["checkpoint", "generator"])
def test_a_train_save_on_a_full_disk_is_one_line_and_leaves_no_partial_file(small_disk, what):
    run = _saving_run(small_disk.make("1m") / "run")
    engine = _FakeEngine(2 * 1024 * 1024)
    target = run.paths.checkpoint(500) if what == "checkpoint" else run.paths.generator
    with pytest.raises(UserError, match=f"^{target}: cannot write \\(no space left on the disk\\)"):
        run.save_checkpoint(engine, 500, 1.0) if what == "checkpoint" else run.save_generator(engine)
    left = sorted(p.relative_to(run.paths.root).as_posix() for p in run.paths.root.rglob("*") if p.is_file())
    assert left == [], left


def test_a_train_save_on_read_only_storage_is_one_line(small_disk):
    run = _saving_run(small_disk.make("1m") / "run")
    small_disk.read_only(run.paths.root.parent)
    with pytest.raises(UserError, match=f"^{run.paths.checkpoint(500)}: cannot write \\(the file system is read-only\\)"):
        run.save_checkpoint(_FakeEngine(10), 500, 1.0)
    with pytest.raises(UserError, match=f"^{run.paths.generator}: cannot write \\(the file system is read-only\\)"):
        run.save_generator(_FakeEngine(10))


def test_a_train_on_read_only_storage_is_one_line_naming_the_run_folder(small_disk):
    from core.gan.config import TrainConfig
    from core.gan.trainer import train

    disk = small_disk.make("1m")
    small_disk.read_only(disk)
    with pytest.raises(UserError, match=f"^{disk / 'run'}: cannot write the run folder \\(the file system is read-only\\)"):
        train(TrainConfig(run=str(disk / "run"), data=str(disk / "cache")))


def test_a_learning_rate_of_1e15_is_refused_before_training(tmp_path):
    """Issue 11 #3: lr 1e15 overflowed the weights while the losses stayed finite. The option is refused
    by range now; weights that still overflow stop the run with the last good checkpoint kept
    (tests/test_gan_trainer.py::test_weights_that_overflow_while_losses_stay_finite_are_caught_before_saving)."""
    done = cli("train", "--data", tmp_path / "nih", "--run", tmp_path / "run", "--lr-g", "1e15", "--lr-d", "1e15",
               timeout=60)
    assert_one_line_error(done, "--lr-g must be between")
    assert list(tmp_path.iterdir()) == []


# ---- evaluate: a toy generator (a real Keras model, so TensorFlow loads: slow)

@pytest.fixture(scope="module")
def toy_real():
    from core.evaluation.real_data import RealData
    from tests.test_generate import TOY_CLASSES, toy_real_data

    images, labels, split = toy_real_data(per_class=20, size=32)
    names = np.array([f"{i + 1:08d}_000.png" for i in range(len(labels))], dtype=object)
    return RealData(images=images, labels=labels, split=split, classes=TOY_CLASSES, source="toy", names=names,
                    patient_ids=np.array([str(i + 1) for i in range(len(labels))], dtype=object))


def _fill(disk: Path, leave: int) -> None:
    """Fill the tmpfs `disk` up to `leave` free bytes."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_an_evaluation_on_a_full_or_read_only_disk_is_one_line_and_leaves_nothing_partial(small_disk, toy_real,
                                                                                           fault):
    from core.evaluation.evaluate import EvaluateConfig, evaluate
    from tests.test_generate import write_toy_run

    disk = small_disk.make("4m")
    run = write_toy_run(disk / "run", "follows")
    before = sorted(p.relative_to(disk).as_posix() for p in disk.rglob("*"))
    if fault == "full":
        _fill(disk, 16 * 1024)
    else:
        small_disk.read_only(disk)
    reason = "no space left on the disk" if fault == "full" else "the file system is read-only"
    with pytest.raises(UserError, match=f"^{run / 'evaluation'}: cannot write \\({reason}\\)$"):
        evaluate(EvaluateConfig(run=str(run), n=6, classifier_steps=5, pairs=4), real=toy_real)
    after = sorted(p.relative_to(disk).as_posix() for p in disk.rglob("*") if p.name != "filler")
    assert [p for p in after if p not in before and not p.endswith("evaluation")] == [], "partial files left"


@pytest.mark.slow
def test_a_config_json_with_more_classes_than_the_model_is_refused_at_load(tmp_path):
    from core.export.generator import load_generator
    from tests.test_generate import write_toy_run

    run = write_toy_run(tmp_path / "run", "follows")
    config = json.loads((run / "config.json").read_text())
    assert len(load_generator(run).classes) == len(config["classes"]) == 3
    (run / "config.json").write_text(json.dumps({**config, "classes": [*config["classes"], "Nodule", "Hernia"]}))
    with pytest.raises(UserError, match=f"{run / 'config.json'}: lists 5 classes but the model was trained on 3"):
        load_generator(run)


@pytest.mark.slow
def test_a_train_killed_mid_run_resumes_to_the_end_and_leaves_no_temporaries(tmp_path, tiny_cache):
    """kill -9 during training (after a checkpoint): the lock dies with the process, the next `--resume`
    removes the temporaries a kill can leave, continues from the checkpoint and ends with one metrics row
    per step and a loadable generator."""
    import signal
    import sys
    import time

    from core.gan.runs import read_metrics
    from tests.faults.conftest import REPO

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen([sys.executable, str(REPO / "main.py"), "train", "--data", str(tiny_cache), "--run",
                                str(run), "--size", "32", "--batch", "4", "--channels", "4", "--threads", "1",
                                "--steps", "100000", "--checkpoint-every", "2", "--log-every", "1", "--guide-steps", "4"],
                               env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((run / "checkpoints").glob("step_*.npz")):
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.1)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (run / "checkpoints" / ".step_9999998.npz.k1.tmp").write_bytes(b"half a checkpoint")  # what a kill can leave
    (run / ".generator.tmp.keras").write_bytes(b"half a model")
    last = int(sorted((run / "checkpoints").glob("step_*.npz"))[-1].stem.split("_")[1])
    done = cli("train", "--run", run, "--resume", "--steps", last + 2, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [row["step"] for row in read_metrics(run / "metrics.jsonl")] == list(range(1, last + 3))
    assert not [p for p in run.rglob("*") if p.name.endswith((".tmp", ".tmp.keras")) or p.name.endswith(".lock")]
    assert (run / "generator.keras").is_file() and not (tmp_path / ".run.lock").exists()
