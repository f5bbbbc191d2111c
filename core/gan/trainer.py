"""`train(config, job) -> RunSummary`: the whole training task, from the data source to generator.keras.

Order of work, so that nothing is prepared or written before the run folder is known to be usable:
lock the run folder for the whole run (a second train or resume is refused; a killed run's temporaries
are removed) -> check the run folder (new run, or resume) -> prepare the cache if `data` is an NIH
folder -> write config.json -> build and compile -> train -> save.

What the loop guarantees:
- metrics.jsonl gets one row per `log_every` steps (averages over those steps); the job receives the
  same row as a "metrics" event, each sample grid (also saved to samples/) as a "samples" event and
  messages as "log" events. Progress reports name the stage: preparing, compiling, training, saving.
- Stop: `job.request_stop()` (from any thread) ends the run after the current step; a checkpoint and
  generator.keras are saved and `Cancelled` is raised with the `RunSummary` as its `result`, like every
  other task that is stopped.
- A time budget (`minutes`) ends the run the same way but as a normal finish (`reason="time budget"`).
- NaN/Inf losses, or weights that became NaN/Inf (checked at every metrics row and before saving),
  raise `TrainingDiverged` (a UserError) before anything is saved, so the last checkpoint on disk is
  the last good state; a resume may lower the learning rates.
- Resume loads the newest checkpoint (weights, EMA, optimizer state, step, elapsed time); batches and
  in-step randomness are keyed by step, so the resumed run is the uninterrupted run. A run stopped
  before its first checkpoint resumes from step 0.
- `threads`: TensorFlow's thread pools can only be sized before its runtime starts, so it is applied
  on the first run in a process; later runs log that it was not applied.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.atomic import atomic_write_bytes, describe_os_error
from core.cleanup import clean_run_folder
from core.errors import UserError
from core.gan.batches import TrainingData, make_dataset, open_cache
from core.gan.config import TrainConfig
from core.gan.runs import RunPaths, append_metrics, truncate_metrics
from core.jobs import Cancelled, Job
from core.locks import hold_lock
from core.render import sample_grid

SAMPLE_COLUMNS = 8
KEEP_CHECKPOINTS = 3


class TrainingDiverged(UserError):
    """Losses became NaN or Inf; the run folder still holds the last good checkpoint."""


@dataclass(frozen=True)
class SampleGrid:
    """A "samples" event: the grid of one row per class drawn at `step`, saved at `path`."""

    step: int
    grid: np.ndarray
    path: Path


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
    reason: str = "finished"    # "finished" (all steps), "time budget" or "stopped" (on request)


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

    def __init__(self, config: TrainConfig, job: Job):
        self.config = config
        self.job = job
        self.paths = RunPaths(Path(config.run))
        self.data: TrainingData | None = None
        self.total = self.steps_per_epoch = self.sample_interval = 0
        self.elapsed_before = 0.0
        self.guide_done = 0        # class guide warm-up steps done (core/gan/guide.py)
        self.last_checkpoint: Path | None = None
        self.resume_from: Path | None = None
        self.board = None

    def log(self, text: str) -> None:
        self.job.log(text)

    def check_folder(self) -> None:
        """Refuse a resume with nothing to resume or a different experiment, and a new run over a trained
        one, before anything is prepared or written."""
        self.paths.make()
        checkpoint = self.paths.latest_checkpoint()
        if self.config.resume:
            if not self.paths.config.exists():
                raise UserError(f"{self.paths.config}: nothing to resume (no config.json in the run folder)")
            saved = TrainConfig.load(self.paths.config)
            changed = self.config.differences(saved)
            if changed:
                detail = ", ".join(f"{name}: {getattr(saved, name)!r} -> {getattr(self.config, name)!r}"
                                   for name in changed)
                raise UserError(f"{self.paths.root}: cannot resume with a different config ({detail})")
            self.resume_from = checkpoint
        elif checkpoint is not None:
            raise UserError(f"{self.paths.root}: already holds a trained run (checkpoint {checkpoint.name}); "
                            f"resume it or choose a new run folder")

    def attach(self, data: TrainingData) -> None:
        self.data = data
        self.total = total_steps(self.config, len(data.labels))
        self.steps_per_epoch = math.ceil(len(data.labels) / self.config.batch)
        self.sample_interval = self.config.sample_every or max(self.steps_per_epoch, self.config.log_every)

    def write_config(self) -> None:
        self.config.save(self.paths.config)

    def open_board(self) -> None:
        from core.gan.board import RunBoard

        self.board = RunBoard(self.paths.board)
        self._to_board("config", self.config.to_json())

    def _to_board(self, what: str, *args) -> None:
        """TensorBoard is a view of the run: if its files cannot be written, say so once and go on."""
        if self.board is None:
            return
        try:
            getattr(self.board, what)(*args)
        except Exception as error:  # noqa: BLE001 - a viewer's files must never stop training
            self.log(f"TensorBoard logs stopped: {error}")
            self.board = None

    def restore(self, engine) -> int:
        if self.resume_from is None:
            if self.config.resume:
                self.log("no checkpoint yet: starting the run again from step 0")
            self.paths.metrics.write_text("")
            for old in self.paths.samples.glob("step_*.png"):
                old.unlink(missing_ok=True)
            return 0
        step, extra = engine.load_state(self.resume_from)
        self.elapsed_before = float(extra.get("elapsed_s", 0.0))
        self.guide_done = int(extra.get("guide_done", self.config.guide_steps))
        self.last_checkpoint = self.resume_from
        truncate_metrics(self.paths.metrics, step)
        self.log(f"resumed from {self.resume_from.name} (step {step})")
        return step

    def save_checkpoint(self, engine, step: int, elapsed: float) -> None:
        path = self.paths.checkpoint(step)
        _check_weights(engine, step, self)
        extra = {"elapsed_s": elapsed, "guide_done": self.guide_done}
        _write(path, lambda: atomic_write_bytes(path, engine.state_bytes(step, extra)))
        self.last_checkpoint = path
        for old in sorted(self.paths.checkpoints.glob("step_*.npz"))[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    def save_samples(self, engine, step: int, z: np.ndarray, labels: np.ndarray) -> None:
        import cv2

        grid = sample_grid(engine.generate(z, labels), self.data.classes)
        path = self.paths.sample(step)
        ok, png = cv2.imencode(".png", grid)
        if ok:
            _write(path, lambda: atomic_write_bytes(path, png.tobytes()))
        self._to_board("samples", step, grid)
        self.job.emit("samples", SampleGrid(step, grid, path))

    def save_generator(self, engine) -> Path:
        tmp = self.paths.root / ".generator.tmp.keras"

        def save():
            try:
                engine.saved_generator().save(tmp)
                os.replace(tmp, self.paths.generator)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        _write(self.paths.generator, save)
        return self.paths.generator

    def emit_row(self, step: int, sums: dict, count: int, images_per_s: float, elapsed: float) -> dict:
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 3)}
        row.update({k: round(v / count, 6) for k, v in sums.items()})
        row.update({"images_per_s": round(images_per_s, 2), "elapsed_s": round(elapsed, 2)})
        _write(self.paths.metrics, lambda: append_metrics(self.paths.metrics, row))
        self._to_board("metrics", row)
        self.job.emit("metrics", row)
        return row

    def fixed_latents(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.seed, 0xFEED])
        z = rng.standard_normal((SAMPLE_COLUMNS, self.config.latent_dim)).astype(np.float32)
        k = len(self.data.classes)
        return np.tile(z, (k, 1)), np.repeat(np.arange(k, dtype=np.int32), SAMPLE_COLUMNS)


def _write(path: Path, write) -> None:
    """Run a write of the run folder; a full or read-only disk becomes one line naming the file."""
    try:
        write()
    except OSError as error:
        raise UserError(f"{path}: cannot write ({describe_os_error(error)}); free space or choose another "
                        f"run folder, then resume") from None


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


def _diverged(run: "_Run", step: int, what: str) -> TrainingDiverged:
    kept = run.last_checkpoint.name if run.last_checkpoint else "none yet"
    return TrainingDiverged(f"{run.paths.root}: training diverged at step {step} ({what}); last good "
                            f"checkpoint: {kept}. Resume with lower learning rates, or start again with "
                            f"another seed")


def _check_finite(values: dict, step: int, run: "_Run") -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise _diverged(run, step, f"losses {bad}")


def _check_weights(engine, step: int, run: "_Run") -> None:
    """Losses can stay finite while weights overflow (seen with a learning rate of 1e15)."""
    models = {"generator": engine.generator, "EMA generator": engine.ema, "discriminator": engine.discriminator,
              "class guide": engine.guide}
    for name, model in models.items():
        if model is None:
            continue
        bad = sum(1 for w in model.weights if not np.isfinite(np.asarray(w)).all())
        if bad:
            raise _diverged(run, step, f"{bad} {name} weight array(s) are not finite")


def open_training_data(config: TrainConfig, job: Job) -> TrainingData:
    """The training images of `config.data`: a prepared cache, or an NIH folder prepared into RUN/cache."""
    from core.data.cache import ensure_cache, is_prepared_cache

    if not config.data:
        raise UserError("train: --data is required (an NIH dataset folder or a prepared cache)")
    classes = config.class_names()
    if not is_prepared_cache(config.data):
        job.log(f"preparing {', '.join(classes)} at {config.size} px from {config.data}")

    path = ensure_cache(config.data, RunPaths(Path(config.run)).prepared, classes, config.size,
                        job.within("preparing"))
    data = open_cache(path, classes)
    counts = ", ".join(f"{name} {len(rows)}" for name, rows in zip(data.classes, data.by_class()))
    job.log(f"training images from {path}: {counts}")
    return data


def train(config: TrainConfig, job: Job | None = None, data: TrainingData | None = None) -> RunSummary:
    """Train (or resume) the run described by `config`. `data` replaces `config.data` (tests, benches)."""
    config.validate()
    job = job or Job()
    config = replace(config, classes=config.class_names(), run=_worker_run_folder(config))
    with _holding_run_folder(config.run):
        return _train_holding(config, job, data)


@contextmanager
def _holding_run_folder(run_dir: str):
    """One `train` per run folder (issue 11 #1): an OS lock held for the whole run, released on any exit
    (kill -9 included); a second train or resume gets "RUN is in use by process N". Holding it, the
    temporaries a killed run left (`.step_*.tmp`, `.generator.tmp.keras`) are ours to remove."""
    with ExitStack() as held:
        try:
            held.enter_context(hold_lock(run_dir, "run folder"))
            clean_run_folder(run_dir)
        except OSError as error:  # the run's own writes say which file failed (`_write`)
            raise UserError(f"{run_dir}: cannot write the run folder ({describe_os_error(error)})") from error
        yield


def _train_holding(config: TrainConfig, job: Job, data: TrainingData | None) -> RunSummary:
    run = _Run(config, job)
    run.check_folder()
    note = configure_threads(config.threads)
    if note:
        run.log(note)
    if data is None:
        data = open_training_data(config, job)
    elif list(data.classes) != list(config.classes):
        raise UserError(f"{data.source}: classes {data.classes} differ from the config's {config.classes}")
    data.validate(config.size, config.batch)
    job.check()
    run.attach(data)
    run.write_config()
    return _loop(run)


def _loop(run: _Run) -> RunSummary:
    from core.gan.engine import GanEngine, make_strategy

    config, job = run.config, run.job
    job.report(0, 1, "building the networks", stage="compiling")
    engine = GanEngine(config, len(run.data.classes), make_strategy(config.strategy))
    for notice in engine.notices:
        run.log(notice)
    start = run.restore(engine)
    run.open_board()
    z_fixed, y_fixed = run.fixed_latents()
    replicas = engine.replicas
    per_replica = config.batch // replicas
    if config.arch == "reference":
        per_replica //= 2

    def dataset_fn(context):
        return make_dataset(run.data, per_replica, config.balanced, config.seed, start * replicas,
                            run.total * replicas, pipeline_id=context.input_pipeline_id)

    batches = iter(engine.strategy.distribute_datasets_from_function(dataset_fn))
    budget = config.minutes * 60.0 if config.minutes > 0 else math.inf
    t0 = t_first = time.monotonic()
    if engine.guide is not None and run.guide_done < config.guide_steps:   # within the time budget
        _pretrain_guide(run, engine, per_replica, lambda: time.monotonic() - t0 >= budget)
    interval = _Interval()
    last, reason, step = {}, "finished", start
    job.report(start, run.total, "compiling the training step (the first step is slow)", stage="compiling")
    for step in range(start + 1, run.total + 1 if not job.stop_requested else start + 1):
        values = engine.train_step(next(batches), step - 1)
        _check_finite(values, step, run)
        interval.add(values)
        now = time.monotonic()
        elapsed = run.elapsed_before + now - t0
        if step % config.log_every == 0 or step == run.total:
            _check_weights(engine, step, run)
            last = interval.flush(run, step, elapsed)
        if step % run.sample_interval == 0 or step == run.total:
            run.save_samples(engine, step, z_fixed, y_fixed)
        if step % config.checkpoint_every == 0 and step != run.total:
            run.save_checkpoint(engine, step, elapsed)
        if step == start + 1:
            t_first = now   # the first step compiles: speed is measured from its end
        job.report(step, _expected_total(step, step - start - 1, now - t_first, run.total, budget - (now - t0)),
                   f"d_real {values['d_loss_real']:.3f} d_fake {values['d_loss_fake']:.3f} g {values['g_loss']:.3f}",
                   stage="training")
        if job.stop_requested or now - t0 >= budget:
            reason = "stopped" if job.stop_requested else "time budget"
            last = interval.flush(run, step, elapsed) or last   # keep the steps since the last row
            break
    if job.stop_requested:   # also when the stop came during the class guide's warm-up
        reason = "stopped"
    seconds = time.monotonic() - t0
    job.report(step, step, "saving the checkpoint and generator.keras", stage="saving")
    if run.last_checkpoint is None or run.last_checkpoint != run.paths.checkpoint(step):
        run.save_checkpoint(engine, step, run.elapsed_before + seconds)
    generator = run.save_generator(engine)
    if run.board is not None:
        run.board.close()
    trained = step - start
    run.log(f"{'stopped' if reason == 'stopped' else 'finished'} at step {step}/{run.total}"
            + (f" (time budget of {config.minutes:g} min)" if reason == "time budget" else ""))
    summary = RunSummary(run_dir=str(run.paths.root), step=step, total_steps=run.total, stopped=reason == "stopped",
                         seconds=seconds, images_per_s=trained * config.batch / seconds if seconds > 0 else 0.0,
                         metrics=last, generator=str(generator), reason=reason)
    if reason == "stopped":
        raise Cancelled(f"stopped at step {step}/{run.total}; checkpoint and generator saved", result=summary)
    return summary


def _pretrain_guide(run: _Run, engine, per_replica: int, out_of_time) -> None:
    """Teach the class guide the training images before the GAN's first step (core/gan/guide.py).

    Its batches are class-balanced and come from their own stream (seed + 1), so the GAN's batches are
    the same with or without a guide. Checkpoints record how many of its steps are done, so a run
    stopped or killed in this stage continues it exactly on resume; a stop request or the time budget
    ends it early (a stopped run then stops at step 0)."""
    config, job = run.config, run.job
    replicas = engine.replicas

    def dataset_fn(context):
        return make_dataset(run.data, per_replica, True, config.seed + 1, run.guide_done * replicas,
                            config.guide_steps * replicas, pipeline_id=context.input_pipeline_id)

    batches = iter(engine.strategy.distribute_datasets_from_function(dataset_fn))
    recent: list[float] = []
    while run.guide_done < config.guide_steps and not job.stop_requested and not out_of_time():
        recent = (recent + [engine.guide_pretrain_step(next(batches), run.guide_done)])[-50:]
        run.guide_done += 1
        job.report(run.guide_done, config.guide_steps, "learning your classes before the GAN starts (class guide)",
                   stage="guide")
    if recent:
        run.log(f"class guide: {run.guide_done} of {config.guide_steps} warm-up steps done; it puts "
                f"{np.mean(recent):.0%} of the last {len(recent)} training batches' images in their class")


def _expected_total(step: int, timed_steps: int, timed_seconds: float, total: int, time_left: float) -> int:
    """The step training will end at: the last step, or earlier where the time budget runs out at the
    speed of the steps run since this start or resume, after the first (which includes compiling), so
    the ETA shown is the time left in the budget. Before any speed is known, one step more."""
    if not math.isfinite(time_left):
        return total
    if timed_steps <= 0 or timed_seconds <= 0:
        return min(total, step + 1)
    at_budget = step + int(max(0.0, time_left) * timed_steps / timed_seconds)
    return max(step, min(total, at_budget))
