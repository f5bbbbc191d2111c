"""Remove what a killed job left behind, at the next start of the same job.

Every job writes through hidden temporaries (atomic writes, staging folders) so that a kill never
leaves a half-written file where a reader looks; this module removes those temporaries later. It only
touches names the tool itself makes, and the caller must hold the folder's lock (`core.locks`): without
it, the "leftover" could be the live temporary of a job running right now.

Folder replacement by renames (a prepared cache, an export with --force) is two steps:
TARGET -> `.TARGET.old-*`, then the finished staging folder `.TARGET.<kind>-*` -> TARGET. A kill between
them leaves no TARGET at all; `recover_swap` finishes or undoes that at the next start.
"""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

from core.atomic import TEMP_SUFFIX

# Temporaries a training run writes, per sub-folder of the run folder.
RUN_LEFTOVERS: dict[str, tuple[str, ...]] = {
    ".": (f".*{TEMP_SUFFIX}", ".generator.tmp.keras", ".write_test"),
    "checkpoints": (f".step_*{TEMP_SUFFIX}",),
    "samples": (f".step_*{TEMP_SUFFIX}",),
}
# Temporaries `evaluate` and `augment-bench` write in RUN/evaluation (reports, plots, the judge model).
# Apart from RUN_LEFTOVERS: an evaluation may run beside a training run, under its own lock.
EVALUATION_LEFTOVERS: tuple[str, ...] = (f".*{TEMP_SUFFIX}", ".*.tmp.keras")


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_leftovers(folder: str | os.PathLike, patterns: Iterable[str]) -> list[Path]:
    """Remove the files and folders directly in `folder` whose names match any glob pattern; the removed
    paths. A missing folder has nothing to remove; an OSError (read-only disk) propagates."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if _remove(path):
                removed.append(path)
    return removed


def clean_run_folder(run_dir: str | os.PathLike) -> list[Path]:
    """Remove a killed run's temporaries: `.step_*.tmp` checkpoints and samples, `.generator.tmp.keras`,
    the atomic writers' `.config.json.*.tmp` and the like. Hold the run's lock. (RUN/evaluation is
    cleaned by the evaluation: `remove_leftovers(RUN/evaluation, EVALUATION_LEFTOVERS)` under its lock.)"""
    run_dir = Path(run_dir)
    removed = []
    for sub, patterns in RUN_LEFTOVERS.items():
        removed += remove_leftovers(run_dir / sub, patterns)
    return removed


def _siblings(target: Path, kind: str) -> list[Path]:
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.{kind}-*"))


def recover_swap(target: str | os.PathLike, staging_kinds: Iterable[str],
                 is_complete: Callable[[Path], bool]) -> list[str]:
    """Finish or undo an interrupted replacement of the folder `target`; the actions taken, as sentences.

    `staging_kinds` are the infixes of the job's staging folders (`partial` for an export, `building`
    for a cache); `is_complete(folder)` says whether a staging folder was finished (its last file is
    there). When `target` is missing: a complete staging folder is renamed into place (the job had
    finished its work), else the newest `.TARGET.old-*` copy is restored. Then every other staging
    folder and old copy is removed. Hold the target's lock (`core.locks.hold_lock(target, ...)`).
    """
    target = Path(os.path.abspath(target))
    staging = [path for kind in staging_kinds for path in _siblings(target, kind)]
    old = sorted(_siblings(target, "old"), key=lambda path: path.stat().st_ctime)
    actions = []
    if not target.exists():
        complete = [path for path in staging if path.is_dir() and is_complete(path)]
        if complete:
            os.replace(complete[-1], target)
            staging.remove(complete[-1])
            actions.append(f"{target}: finished an interrupted replacement (moved {complete[-1].name} into place)")
        elif old:
            restored = old.pop()
            os.replace(restored, target)
            actions.append(f"{target}: restored the earlier copy from {restored.name} (a replacement was interrupted)")
    leftovers = [path for path in staging + old if _remove(path)]
    if leftovers:
        actions.append(f"{target.parent}: removed {len(leftovers)} leftover(s) of interrupted runs "
                       f"({', '.join(path.name for path in leftovers[:3])}{', ...' if len(leftovers) > 3 else ''})")
    return actions
