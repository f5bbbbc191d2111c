"""`train(config, job=None, callbacks=()) -> RunSummary`: the training loop around `GanEngine`.

What the loop guarantees:
- metrics.jsonl gets one row per `log_every` steps (averages over those steps) and every callback's
  `on_metrics` sees the same row; sample grids go to samples/ and `on_samples`.
- Stop: `job.request_stop()` (from any thread) ends the run after the current step; a checkpoint and
  generator.keras are saved and the summary has `stopped=True` (no exception is raised).
- NaN/Inf losses raise `TrainingDiverged` (a UserError) before anything is saved, so the last
  checkpoint on disk is the last good state.
- Resume loads the newest checkpoint (weights, EMA, optimizer state, step, elapsed time); batches and
  in-step randomness are keyed by step, so the resumed run is the uninterrupted run.
- `threads`: TensorFlow's thread pools can only be sized before its runtime starts, so it is applied
  on the first run in a process; later runs log that it was not applied.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from core.errors import UserError
from core.gan.config import TrainConfig
from core.gan.batches import TrainingData, make_dataset, open_cache
from core.atomic import atomic_write_bytes
from core.gan.runs import RunPaths, append_metrics, truncate_metrics
from core.jobs import Job
from core.render import sample_grid

SAMPLE_COLUMNS = 8
KEEP_CHECKPOINTS = 3


class TrainingDiverged(UserError):
    """Losses became NaN or Inf; the run folder still holds the last good checkpoint."""


class TrainCallback:
    """Observer of a run (the GUI's live plots, tests). Override what you need; all run on the training thread."""

    def on_metrics(self, row: dict) -> None:
        pass

    def on_samples(self, step: int, grid: np.ndarray, path: Path) -> None:
        pass

    def on_log(self, text: str) -> None:
        pass


@dataclass
class RunSummary:
    run_dir: str
    step: int
    total_steps: int
    stopped: bool
    seconds: float
    images_per_s: float
    metrics: dict = field(default_factory=dict)
    generator: str | None = None


def configure_threads(threads: int) -> str | None:
    """Size TF's thread pools; returns a message if TF had already started and it could not be applied."""
    import tensorflow as tf

    if threads <= 0:
        return None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            return (f"threads={threads} not applied: TensorFlow was already running in this process "
                    f"(using {current or 'all'} threads)")
    return None


def _worker_run_folder(config: TrainConfig) -> str:
    """Under multiworker training only the chief (worker 0) writes RUN; worker i writes RUN/worker_i, so
    the workers never overwrite each other's files (each keeps a full, resumable copy of the state)."""
    if config.strategy != "multiworker":
        return config.run
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError as error:
        raise UserError(f"TF_CONFIG: not valid JSON ({error})") from error
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {}))
    return config.run if is_chief else str(Path(config.run) / f"{kind}_{index}")


def total_steps(config: TrainConfig, n_images: int) -> int:
    if config.epochs > 0:
        return config.epochs * math.ceil(n_images / config.batch)
    return config.steps


class _Run:
    """One call of `train`: owns the paths, the engine and the bookkeeping of the loop."""

    def __init__(self, config: TrainConfig, data: TrainingData, job: Job, callbacks: tuple):
        self.config = config
        self.data = data
        self.job = job
        self.callbacks = callbacks
        self.paths = RunPaths(Path(config.run))
        self.total = total_steps(config, len(data.labels))
        self.steps_per_epoch = math.ceil(len(data.labels) / config.batch)
        self.sample_interval = config.sample_every or max(self.steps_per_epoch, config.log_every)
        self.elapsed_before = 0.0
        self.last_checkpoint: Path | None = None

    def log(self, text: str) -> None:
        for callback in self.callbacks:
            callback.on_log(text)

    def prepare_folder(self) -> None:
        self.paths.make()
        if self.config.resume:
            if not self.paths.config.exists():
                raise UserError(f"{self.paths.config}: nothing to resume (no config.json in the run folder)")
            saved = TrainConfig.load(self.paths.config)
            changed = self.config.differences(saved)
            if changed:
                detail = ", ".join(f"{name}: {getattr(saved, name)!r} -> {getattr(self.config, name)!r}"
                                   for name in changed)
                raise UserError(f"{self.paths.root}: cannot resume with a different config ({detail})")
            if self.paths.latest_checkpoint() is None:
                raise UserError(f"{self.paths.checkpoints}: no checkpoint to resume from")
        elif self.paths.latest_checkpoint() is not None or self.paths.metrics.exists():
            raise UserError(f"{self.paths.root}: already holds a run; pass --resume to continue it "
                            f"or choose a new run folder")
        self.config.save(self.paths.config)

    def restore(self, engine) -> int:
        if not self.config.resume:
            self.paths.metrics.write_text("")
            return 0
        path = self.paths.latest_checkpoint()
        step, extra = engine.load_state(path)
        self.elapsed_before = float(extra.get("elapsed_s", 0.0))
        self.last_checkpoint = path
        truncate_metrics(self.paths.metrics, step)
        self.log(f"resumed from {path.name} (step {step})")
        return step

    def save_checkpoint(self, engine, step: int, elapsed: float) -> None:
        path = self.paths.checkpoint(step)
        atomic_write_bytes(path, engine.state_bytes(step, {"elapsed_s": elapsed}))
        self.last_checkpoint = path
        for old in sorted(self.paths.checkpoints.glob("step_*.npz"))[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    def save_samples(self, engine, step: int, z: np.ndarray, labels: np.ndarray) -> None:
        import cv2

        grid = sample_grid(engine.generate(z, labels), self.data.classes)
        path = self.paths.sample(step)
        ok, png = cv2.imencode(".png", grid)
        if ok:
            atomic_write_bytes(path, png.tobytes())
        for callback in self.callbacks:
            callback.on_samples(step, grid, path)

    def save_generator(self, engine) -> Path:
        tmp = self.paths.root / ".generator.tmp.keras"
        engine.ema.save(tmp)
        os.replace(tmp, self.paths.generator)
        return self.paths.generator

    def emit_row(self, step: int, sums: dict, count: int, images_per_s: float, elapsed: float) -> dict:
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 3)}
        row.update({k: round(v / count, 6) for k, v in sums.items()})
        row.update({"images_per_s": round(images_per_s, 2), "elapsed_s": round(elapsed, 2)})
        append_metrics(self.paths.metrics, row)
        for callback in self.callbacks:
            callback.on_metrics(row)
        return row

    def fixed_latents(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.seed, 0xFEED])
        z = rng.standard_normal((SAMPLE_COLUMNS, self.config.latent_dim)).astype(np.float32)
        k = len(self.data.classes)
        return np.tile(z, (k, 1)), np.repeat(np.arange(k, dtype=np.int32), SAMPLE_COLUMNS)


class _Interval:
    """Metric sums since the last metrics row; `flush` writes their averages as the next row."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.monotonic()

    def add(self, values: dict) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def flush(self, run: "_Run", step: int, elapsed: float) -> dict:
        if not self.count:
            return {}
        rate = self.count * run.config.batch / max(1e-9, time.monotonic() - self.start)
        row = run.emit_row(step, self.sums, self.count, rate, elapsed)
        self._reset()
        return row


def _check_finite(values: dict, step: int, run: "_Run") -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        kept = run.last_checkpoint.name if run.last_checkpoint else "none yet"
        raise TrainingDiverged(f"{run.paths.root}: training diverged at step {step} ({bad}); "
                               f"last good checkpoint: {kept}. Lower the learning rates and resume, "
                               f"or start again with another seed")


def train(config: TrainConfig, job: Job | None = None, callbacks: Iterable[TrainCallback] = (),
          data: TrainingData | None = None) -> RunSummary:
    """Train (or resume) the run described by `config`. `data` overrides `config.cache` (tests, the GUI)."""
    config.validate()
    callbacks = tuple(callbacks)
    job = job or Job()
    note = configure_threads(config.threads)
    if data is None:
        if not config.cache:
            raise UserError("train: --cache (a prepared cache folder) is required")
        data = open_cache(config.cache)
    data.validate(config.size, config.batch)
    if config.classes and list(config.classes) != list(data.classes):
        raise UserError(f"{data.source}: classes {data.classes} differ from the config's {config.classes}")
    config = replace(config, classes=list(data.classes), run=_worker_run_folder(config))
    run = _Run(config, data, job, callbacks)
    run.prepare_folder()
    if note:
        run.log(note)
    return _loop(run)


def _loop(run: _Run) -> RunSummary:
    from core.gan.engine import GanEngine, make_strategy

    config = run.config
    engine = GanEngine(config, len(run.data.classes), make_strategy(config.strategy))
    for notice in engine.notices:
        run.log(notice)
    start = run.restore(engine)
    z_fixed, y_fixed = run.fixed_latents()
    replicas = engine.replicas
    per_replica = config.batch // replicas
    if config.arch == "reference":
        per_replica //= 2

    def dataset_fn(context):
        return make_dataset(run.data, per_replica, config.balanced, config.seed, start * replicas,
                            run.total * replicas, pipeline_id=context.input_pipeline_id)

    batches = iter(engine.strategy.distribute_datasets_from_function(dataset_fn))
    t0 = time.monotonic()
    interval = _Interval()
    last, stopped, step = {}, False, start
    for step in range(start + 1, run.total + 1):
        values = engine.train_step(next(batches), step - 1)
        _check_finite(values, step, run)
        interval.add(values)
        elapsed = run.elapsed_before + time.monotonic() - t0
        if step % config.log_every == 0 or step == run.total:
            last = interval.flush(run, step, elapsed)
        if step % run.sample_interval == 0 or step == run.total:
            run.save_samples(engine, step, z_fixed, y_fixed)
        if step % config.checkpoint_every == 0 and step != run.total:
            run.save_checkpoint(engine, step, elapsed)
        run.job.report(step, run.total, f"d_real {values['d_loss_real']:.3f} d_fake {values['d_loss_fake']:.3f} "
                                        f"g {values['g_loss']:.3f}")
        if run.job.stop_requested:
            last = interval.flush(run, step, elapsed) or last   # keep the steps since the last row
            stopped = True
            break
    seconds = time.monotonic() - t0
    elapsed = run.elapsed_before + seconds
    if run.last_checkpoint is None or run.last_checkpoint != run.paths.checkpoint(step):
        run.save_checkpoint(engine, step, elapsed)
    generator = run.save_generator(engine)
    trained = step - start
    run.log(f"{'stopped' if stopped else 'finished'} at step {step}/{run.total}")
    return RunSummary(run_dir=str(run.paths.root), step=step, total_steps=run.total, stopped=stopped,
                      seconds=seconds, images_per_s=trained * config.batch / seconds if seconds > 0 else 0.0,
                      metrics=last, generator=str(generator))
