"""Live quality during training: does each row of the sample grid show its class yet?

Every "samples" event of a training run (one row per class, the same fixed latents at every step)
also yields a "quality" event: `{"step", "per_class": {class: share}, "overall", "chance",
"judge_accuracy"}`. A class's share is the part of its row that the judge puts in that class (the
conditional accuracy of `evaluate`, on the grid's few tiles); `judge_accuracy` is the judge's own
accuracy on held-out real images, the ceiling a perfect generator would reach, and `chance` the floor.

The judge is the evaluation's classifier (`core.evaluation.classifier.cached_classifier` with its
default settings), trained on the run's training cache and cached in RUN/evaluation: `evaluate`,
`augment-bench` and `generate --recipe recommended` later load the same file, so its training is paid
once per run, not once for the live view. It trains in a background thread started at the first sample
grid (the cache exists by then) and competes with the GAN for the CPU while it does; grids that arrive
before it is ready are judged as soon as it is, so the curve starts at the first grid. Classifying a grid
is one forward pass over a few dozen tiles. Measured at 64 px (7 classes, 400 training images, CPU
time so that the load of a shared machine does not distort it): the judge's 800 steps cost about 100
CPU-seconds, a sixth of what a 5-minute Quick look has on two cores (a thirtieth of Best quality), and
judging one grid about 0.1 CPU-second. A run that ends before its judge is ready drops it unsaved.

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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.jobs import Cancelled, ChildJob, Job

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
        self._thread: threading.Thread | None = None
        self._stop = Job()
        self._judge: Any = None
        self._judge_accuracy: float | None = None
        self.failed = False
        self.judge_seconds: float | None = None     # wall time to train (or load) the judge
        self.judge_cached = False
        self.classify_seconds = 0.0                 # total wall time spent classifying grids

    # ---- the judge, in the background
    def _start_judge(self, run_dir: Path, data: str) -> None:
        self._thread = threading.Thread(target=self._build_judge, args=(run_dir, data), name="live-quality-judge",
                                        daemon=True)
        self._thread.start()

    def _build_judge(self, run_dir: Path, data: str) -> None:
        from core.evaluation.classifier import ClassifierConfig, Embedder, cached_classifier
        from core.evaluation.real_data import open_real_data
        from core.gan.runs import RunPaths

        started = time.monotonic()
        try:
            paths = RunPaths(run_dir)
            real = open_real_data(paths.training_cache({"data": data}), self.classes, self.size)
            real.require_training_and_test()
            train_x, train_y = real.part("train")
            model, self.judge_cached = cached_classifier(paths.evaluation, train_x, train_y, self.classes,
                                                         JUDGE or ClassifierConfig(), self._stop)
            embed = Embedder(model)
            test_x, test_y = real.held_out()
            self._judge_accuracy = round(float((embed(test_x)[0].argmax(1) == test_y).mean()), 4)
            self.judge_seconds = time.monotonic() - started
            self._judge = embed
        except Cancelled:
            return
        except Exception as error:  # noqa: BLE001 - the live view is a help; training goes on without it
            self.failed = True
            self._log(f"live quality is off for this run: {error}")
            return
        self._log(f"live quality: judge {'loaded' if self.judge_cached else 'trained'} in "
                  f"{self.judge_seconds:.0f} s (kept in {paths.evaluation} for evaluate and export); "
                  f"its accuracy on held-out real images is {self._judge_accuracy:.2f}")

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
        if self._thread is None:
            self._start_judge(run_dir, data)
        return self.judge_pending()

    def judge_pending(self) -> list[dict]:
        """Quality events of the queued grids, oldest first, once the judge is ready (else [])."""
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
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        """Stop a judge still training (nothing half-written is kept) and wait for its thread."""
        self._stop.request_stop()
        if self._thread is not None:
            self._thread.join()


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
