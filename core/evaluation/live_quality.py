"""Live quality during training: does each row of the sample grid show its class yet?

Every "samples" event of a training run (one row per class, the same fixed latents at every step)
also yields a "quality" event: `{"step", "per_class": {class: share}, "overall", "chance",
"judge_accuracy"}`. A class's share is the part of its row that the judge puts in that class (the
conditional accuracy of `evaluate`, on the grid's few tiles); `judge_accuracy` is the judge's own
accuracy on held-out real images, the ceiling a perfect generator would reach, and `chance` the floor.

The judge is the evaluation's classifier (`core.evaluation.classifier.cached_classifier` with its
default settings), trained on the run's training cache and cached in RUN/evaluation: `evaluate`,
`augment-bench` and `generate --recipe recommended` later load the same file, so its training is paid
once per run, not once for the live view. It trains in a process of its own, started at the first sample
grid (the cache exists by then), on half the cores' threads, so it takes one of two cores from the GAN
while it does; grids that arrive before it is ready are judged as soon as it is, so the curve starts at the first
grid. It used to train in a thread of the training process: TensorFlow running two jobs from two Python
threads corrupted memory (three of six 128 px training runs died at their first sample grid:
heap or mutex corruption, a gradient sum "Parameters and update must be the same size"), and the
judge's `keras.utils.set_random_seed` reseeded the training process. The judge is loaded in the training
thread, between steps, and classifying a grid is one forward pass over a few dozen tiles. Measured at 64 px
(7 classes, 400 training images, CPU time so that the load of a shared machine does not distort it): the
judge's 800 steps cost about 100 CPU-seconds, a sixth of what a 5-minute Quick look has on two cores (a
thirtieth of Best quality), and judging one grid about 0.1 CPU-second. A run that ends before its judge is
ready stops it, unsaved. The process is started with multiprocessing's 'spawn', like the app's training
process: a script that trains through `core` needs Python's usual `if __name__ == "__main__":` guard.

Every event is also appended to RUN/quality.jsonl (`QualityLog`), so reopening a run shows its curve;
`read_quality` reads that file as untrusted input (bad lines are counted and skipped). A resumed run's
first event drops the rows from that step on (the old timeline beyond the checkpoint).

Quality never stops training: if the judge cannot be built (a class without training images, a disk
error) the run logs one line and goes on without it. `LIVE_QUALITY_MIN_COLUMNS` is the switch: a grid
with fewer columns per class says too little to be worth the judge's training.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.jobs import ChildJob, Job

LIVE_QUALITY_MIN_COLUMNS = 4
QUALITY_EVENT = "quality"
JUDGE = None   # ClassifierConfig of the judge; None = the evaluation's default (so the file is shared)


def grid_tiles(grid: np.ndarray, n_classes: int, size: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The image tiles of a `core.render.sample_grid` (one row per class, `columns` tiles of `size` px
    right of a margin with the class names): uint8 (rows*columns, size, size) and each tile's class."""
    rows, cols = n_classes, columns
    if grid.ndim != 2 or grid.shape[0] != rows * size or grid.shape[1] < cols * size:
        raise ValueError(f"a sample grid of {rows} rows of {cols} tiles of {size} px expected, "
                         f"got shape {grid.shape}")
    tiles = grid[:, grid.shape[1] - cols * size:]
    images = tiles.reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(rows * cols, size, size)
    return np.ascontiguousarray(images), np.repeat(np.arange(rows), cols)


def adherence(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Per class: the share of its tiles the judge puts in that class."""
    called = probs.argmax(axis=1)
    return {name: round(float((called[labels == c] == c).mean()), 4) for c, name in enumerate(classes)
            if (labels == c).any()}


def quality_text(event: dict) -> str:
    """One line for the terminal and the log: overall, the weakest classes and the judge's ceiling."""
    worst = sorted(event["per_class"].items(), key=lambda item: item[1])[:3]
    weakest = ", ".join(f"{name} {share:.2f}" for name, share in worst)
    return (f"quality at step {event['step']}: {event['overall']:.2f} of samples show their class "
            f"(weakest: {weakest}; judge on real images {event['judge_accuracy']:.2f}, chance {event['chance']:.2f})")


class LiveQuality:
    """Judges the sample grids of one training run; `observe(sample)` returns the quality events ready."""

    def __init__(self, classes: list[str], size: int, columns: int, log=None):
        self.classes = list(classes)
        self.size = size
        self.columns = columns
        self._log = log or (lambda text: None)
        self._pending: list[tuple[int, np.ndarray]] = []
        self._process: Any = None
        self._results: Any = None                   # the parent's end of the pipe from the judge's process
        self._started = 0.0
        self._judge: Any = None
        self._judge_accuracy: float | None = None
        self.failed = False
        self.judge_seconds: float | None = None     # wall time to train (or load) the judge
        self.judge_cached = False
        self.classify_seconds = 0.0                 # total wall time spent classifying grids

    # ---- the judge, in a process of its own
    def _start_judge(self, run_dir: Path, data: str) -> None:
        import multiprocessing

        self._started = time.monotonic()
        context = multiprocessing.get_context("spawn")
        results, sender = context.Pipe(duplex=False)
        process = context.Process(target=_judge_process, name="cxr-live-quality-judge", daemon=True,
                                  args=(str(run_dir), data, self.classes, self.size, JUDGE, sender, os.getpid()))
        try:
            process.start()
        except (OSError, AssertionError) as error:   # AssertionError: started from a daemonic process
            results.close()
            self._fail(f"its judge could not be started ({error})")
            return
        finally:
            sender.close()   # only the child writes: its exit (or death) is then seen as the end of the pipe
        self._process, self._results = process, results

    def _fail(self, reason: str) -> None:
        self.failed = True
        self._log(f"live quality is off for this run: {reason}")

    def _collect(self, block: bool) -> None:
        """Take the judge's process's answer if it has come (or wait for it), and load the judge here."""
        if self._results is None or (not block and not self._results.poll()):
            return
        try:
            answer = self._results.recv()
        except EOFError:
            answer = {"error": f"its judge's process ended unexpectedly (exit code {self._end_process(5.0)})"}
        self._end_process(5.0)
        if "error" in answer:
            self._fail(answer["error"])
            return
        try:
            import keras

            from core.evaluation.classifier import Embedder

            model = keras.saving.load_model(answer["path"], compile=False, safe_mode=True)
        except Exception as error:  # noqa: BLE001 - removed or damaged since it was saved: the run goes on
            self._fail(f"{answer['path']}: cannot load the judge ({error})")
            return
        self._judge = Embedder(model)
        self._judge_accuracy, self.judge_cached = answer["accuracy"], answer["cached"]
        self.judge_seconds = time.monotonic() - self._started
        self._log(f"live quality: judge {'loaded' if self.judge_cached else 'trained'} in "
                  f"{self.judge_seconds:.0f} s (kept in {Path(answer['path']).parent} for evaluate and export); "
                  f"its accuracy on held-out real images is {self._judge_accuracy:.2f}")

    def _end_process(self, grace: float) -> int | None:
        """Close the pipe and reap the judge's process, terminated if it has not ended within `grace` s."""
        if self._results is not None:
            self._results.close()
            self._results = None
        if self._process is None:
            return None
        self._process.join(timeout=grace)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        code, self._process = self._process.exitcode, None
        return code

    # ---- per grid
    def observe(self, step: int, grid: np.ndarray, run_dir: Path, data: str) -> list[dict]:
        """Queue this grid; return quality events for every queued grid once the judge is ready."""
        if self.failed or self.columns < LIVE_QUALITY_MIN_COLUMNS:
            return []
        try:
            tiles, _ = grid_tiles(grid, len(self.classes), self.size, self.columns)
        except ValueError as error:
            self.failed = True
            self._log(f"live quality is off for this run: {error}")
            return []
        self._pending.append((step, tiles))
        if self._process is None and self._judge is None:
            self._start_judge(run_dir, data)
        return self.judge_pending()

    def judge_pending(self) -> list[dict]:
        """Quality events of the queued grids, oldest first, once the judge is ready (else [])."""
        self._collect(block=False)
        if self._judge is None or not self._pending:
            return []
        labels = np.repeat(np.arange(len(self.classes)), self.columns)
        events = []
        started = time.monotonic()
        for pending_step, pending_tiles in self._pending:
            probs, _ = self._judge(pending_tiles)
            per_class = adherence(probs, labels, self.classes)
            events.append({"step": int(pending_step), "per_class": per_class,
                           "overall": round(float(np.mean(list(per_class.values()))), 4),
                           "chance": round(1 / len(self.classes), 4), "judge_accuracy": self._judge_accuracy})
        self.classify_seconds += time.monotonic() - started
        self._pending.clear()
        return events

    def wait_for_judge(self) -> None:
        self._collect(block=True)

    def close(self) -> None:
        """Load the judge if its answer has come, else stop its process (a judge stopped while training
        is not kept: its file is written whole or not at all)."""
        self._collect(block=False)
        self._end_process(0.0)


def _judge_process(run_dir: str, data: str, classes: list[str], size: int, config, results, parent_pid: int) -> None:
    """The judge's process: train (or load) the run's judge, measure it on held-out real images, keep it
    in RUN/evaluation and send back where it is. Half the cores as intra-op threads, so the GAN keeps the
    other core of a two-core machine, and no GPU (the training process holds it; the judge is small)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        tf.config.threading.set_intra_op_parallelism_threads(max(1, (os.cpu_count() or 2) // 2))
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from core.evaluation.classifier import ClassifierConfig, Embedder, cached_classifier, evaluator_path
        from core.evaluation.real_data import open_real_data
        from core.gan.runs import RunPaths

        config = config or ClassifierConfig()
        paths = RunPaths(Path(run_dir))
        real = open_real_data(paths.training_cache({"data": data}), classes, size)
        real.require_training_and_test()
        train_x, train_y = real.part("train")
        model, cached = cached_classifier(paths.evaluation, train_x, train_y, classes, config)
        path = evaluator_path(paths.evaluation, train_x, train_y, classes, config)
        if not path.is_file():
            raise OSError(f"{path}: the judge was trained but could not be kept")
        test_x, test_y = real.held_out()
        accuracy = round(float((Embedder(model)(test_x)[0].argmax(1) == test_y).mean()), 4)
        results.send({"path": str(path), "accuracy": accuracy, "cached": cached})
    except Exception as error:  # noqa: BLE001 - the live view is a help; training goes on without it
        results.send({"error": str(error)})
    finally:
        results.close()


def _exit_with_parent(parent_pid: int) -> None:
    """A judge whose training process is gone (killed) has no one to answer: end at once."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def _event_or_none(row: Any) -> dict | None:
    """A quality event read back from RUN/quality.jsonl, checked field by field; None if malformed."""
    def share(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value <= 1

    if not isinstance(row, dict):
        return None
    step, per_class = row.get("step"), row.get("per_class")
    judge = row.get("judge_accuracy")
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        return None
    if not (isinstance(per_class, dict) and per_class and all(isinstance(name, str) and share(value)
                                                              for name, value in per_class.items())):
        return None
    if not (share(row.get("overall")) and share(row.get("chance")) and (judge is None or share(judge))):
        return None
    return {"step": step, "per_class": per_class, "overall": float(row["overall"]), "chance": float(row["chance"]),
            "judge_accuracy": None if judge is None else float(judge)}


def read_quality(path: str | Path) -> tuple[list[dict], str | None]:
    """The events of a RUN/quality.jsonl in step order (the last row of a step wins), and a one-line
    notice when lines were skipped as unreadable (a torn last line after a kill, a hand edit) or the
    file cannot be read; a missing file is ([], None)."""
    from core.atomic import describe_os_error

    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], None
    except OSError as error:
        return [], f"{path}: cannot read the saved live quality ({describe_os_error(error)})"
    by_step, bad = {}, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = _event_or_none(json.loads(line))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            event = None
        if event is None:
            bad += 1
        else:
            by_step[event["step"]] = event
    notice = f"{path}: skipped {bad} unreadable line(s) of live quality" if bad else None
    return [by_step[step] for step in sorted(by_step)], notice


class QualityLog:
    """Appends the events of one training process to RUN/quality.jsonl, one line each (a kill can tear
    only the last line, which `read_quality` skips). Before its first line it rewrites the file
    atomically without rows at or after that event's step, which a resumed run measures again. A disk
    error logs one line and turns the file off; it never stops training."""

    def __init__(self, path: Path, log=None):
        self.path = Path(path)
        self._log = log or (lambda text: None)
        self._started = False
        self.failed = False

    def append(self, event: dict) -> None:
        from core.atomic import atomic_write_text, describe_os_error

        if self.failed:
            return
        try:
            if not self._started:
                kept = [row for row in read_quality(self.path)[0] if row["step"] < event["step"]]
                atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))
                self._started = True
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event) + "\n")
        except OSError as error:
            self.failed = True
            self._log(f"{self.path}: cannot save live quality ({describe_os_error(error)}); the plot goes on "
                      f"without saving it")


class QualityJob(ChildJob):
    """The training job as the trainer sees it: everything passes through to `parent`; each "samples"
    event is followed by the "quality" events it made ready (and their one-line log). `config` is the
    run's TrainConfig; it is read at the first grid, after the trainer has validated it."""

    def __init__(self, parent: Job, config, columns: int):
        super().__init__(parent)
        self._config = config
        self._columns = columns
        self.quality: LiveQuality | None = None
        self._saved: QualityLog | None = None

    def emit(self, kind: str, payload: Any) -> None:
        self._parent.emit(kind, payload)
        if kind != "samples":
            return
        if self.quality is None:
            self.quality = LiveQuality(self._config.class_names(), self._config.size, self._columns,
                                       log=self._parent.log)
        run_dir = Path(payload.path).parent.parent    # RUN/samples/step_N.png
        if self._saved is None:
            from core.gan.runs import RunPaths

            self._saved = QualityLog(RunPaths(run_dir).quality, log=self._parent.log)
        for event in self.quality.observe(payload.step, payload.grid, run_dir, self._config.data):
            self._send(event)

    def _send(self, event: dict) -> None:
        self._saved.append(event)
        self._parent.emit(QUALITY_EVENT, event)
        self._parent.log(quality_text(event))

    def close(self) -> None:
        """At the end of training: stop a judge still training; grids waiting for a judge that became
        ready since the last grid are judged now (the last grid of a run is the one that matters)."""
        if self.quality is not None:
            self.quality.close()
            for event in self.quality.judge_pending():
                self._send(event)
