"""Run folder layout.

    RUN/config.json          the TrainConfig
    RUN/metrics.jsonl        one JSON object per logging step
    RUN/quality.jsonl        one live-quality event per judged sample grid (core.evaluation.live_quality)
    RUN/checkpoints/*.npz    full training state (weights, EMA, optimizers, step), written atomically
    RUN/samples/step_XXXXXXX.png
    RUN/generator.keras      the EMA generator, loads with safe_mode=True
    RUN/tensorboard/         TensorBoard event files: scalars, sample grids, the config
    RUN/cache/               the prepared cache when training from an NIH folder
    RUN/evaluation/          reports, plots and the judge of `evaluate` and `augment-bench`
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.atomic import atomic_write_text
from core.errors import UserError


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def quality(self) -> Path:
        """The live-quality events of the Train tab's class-fidelity plot, one JSON object a line."""
        return self.root / "quality.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def generator(self) -> Path:
        return self.root / "generator.keras"

    @property
    def prepared(self) -> Path:
        """Where training from an NIH folder prepares its cache."""
        return self.root / "cache"

    @property
    def board(self) -> Path:
        """TensorBoard event files (`tensorboard --logdir RUN`)."""
        return self.root / "tensorboard"

    @property
    def evaluation(self) -> Path:
        """Reports, plots and the evaluator classifier of `evaluate` and `augment-bench`."""
        return self.root / "evaluation"

    def real_cache(self, size: int) -> Path:
        """Where evaluation prepares real images from an NIH folder given as `--data`."""
        return self.evaluation / f"real_cache_{size}"

    def training_cache(self, config: dict) -> Path:
        """The prepared cache this run trained on: its config's data when that is a cache, else RUN/cache."""
        from core.data.cache import is_prepared_cache

        given = config.get("data") or config.get("cache")
        candidates = [Path(given)] if given else []
        candidates.append(self.prepared)
        for path in candidates:
            if is_prepared_cache(path):
                return path
        raise UserError(f"{self.root}: cannot find the training cache of this run "
                        f"({', '.join(map(str, candidates))}); give the real data (a prepared cache or the NIH folder)")

    def real_data(self, config: dict, data: str, classes, size: int, job=None) -> Path:
        """The prepared cache of real images to compare a generator with: the run's training cache when
        `data` is empty, else `data` (a cache, or an NIH folder prepared into `real_cache(size)`)."""
        from core.data.cache import ensure_cache

        if not data:
            return self.training_cache(config)
        return ensure_cache(data, self.real_cache(size), classes, size, job)

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.npz"

    def sample(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def make(self) -> None:
        """Create the folders; an unwritable place is a UserError naming it."""
        try:
            for folder in (self.root, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(f"{self.root}: cannot write the run folder ({error.strerror or error})") from error

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoints.glob("step_*.npz")) if self.checkpoints.is_dir() else []
        return found[-1] if found else None


def read_metrics(path: Path) -> list[dict]:
    """All rows of a metrics.jsonl (an unreadable trailing line from a crash is ignored)."""
    if not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def truncate_metrics(path: Path, after_step: int) -> None:
    """Keep only rows up to `after_step`: a resumed run rewrites what happened after its checkpoint."""
    rows = [row for row in read_metrics(path) if row.get("step", 0) <= after_step]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_metrics(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
