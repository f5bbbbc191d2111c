"""Issue 11: kill -9 at random moments, and at the exact moments that matter, of annotation autosave
and `prepare`. After each kill: every visible file parses, holds the state before or after one edit
(never a mix, never half a file), and the next start cleans up and goes on."""
from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from core.data.annotations import Box, open_store, read_bbox_list, read_edited_labels
from core.data.cache import PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset
from core.errors import UserError

from tests.faults.conftest import child

pytestmark = pytest.mark.skipif(os.name != "posix", reason="kill -9 is POSIX")

# Installed in the child after its imports: SIGKILL itself at the n-th call of an os function, before
# the call ("replace:2") or right after it ("after_replace:1").
KILL_AT = """
import os, signal
point, _, nth = os.environ.get("KILL_AT", "").partition(":")
if point:
    name, after, nth, calls = point.removeprefix("after_"), point.startswith("after_"), int(nth), [0]
    real = getattr(os, name)
    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(os, name, wrapped)
"""

# ---- annotation autosave

IMAGES = [f"{i:08d}_000.png" for i in range(1, 21)]
ENTRY = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n" + \
    "".join(f"{name},Mass,0,{i},50,M,PA\n" for i, name in enumerate(IMAGES, 1))

EDITOR = """
import sys
from core.data.annotations import Box, open_store
from core.data.dataset import open_dataset
store = open_store(open_dataset(sys.argv[1]))
""" + KILL_AT + """
print("ready", flush=True)
step = 0
while True:
    step += 1
    image = sys.argv[2:][(step // 2) % len(sys.argv[2:])]
    if step % 2:
        ok = store.set_finding_labels(image, ["Nodule"] if (step // 2) % 3 else ["Effusion", "Mass"])
    else:
        ok = store.set_boxes(image, [Box("Mass", step, 1, 2, 2), Box("Nodule", 1, step, 3, 3)])
    if not ok:
        sys.exit(f"save failed: {store.last_error}")
"""


def editor_state(steps: int) -> tuple[dict, dict]:
    """Boxes and edited labels after `steps` edits of EDITOR (the same rules, replayed)."""
    boxes, labels = {}, {}
    for step in range(1, steps + 1):
        image = IMAGES[(step // 2) % len(IMAGES)]
        if step % 2:
            labels[image] = "Nodule" if (step // 2) % 3 else "Effusion|Mass"
        else:
            boxes[image] = (Box("Mass", step, 1, 2, 2), Box("Nodule", 1, step, 3, 3))
    return boxes, labels


def check_annotations_after_kill(root: Path) -> int:
    """The files on disk are exactly the state after some number of edits; return that number."""
    folder = root / ".cxr-workbench"
    visible = {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.exists() else set()
    assert visible <= {"annotations.csv", "finding_labels.csv"}, visible
    # each file parses (or raises); a file not written yet means no edits of that kind
    boxes = read_bbox_list(folder / "annotations.csv") if "annotations.csv" in visible else {}
    labels = read_edited_labels(folder / "finding_labels.csv") if "finding_labels.csv" in visible else {}
    last_box_step = max((int(b.x) for items in boxes.values() for b in items), default=0)
    for steps in range(max(0, last_box_step - 1), last_box_step + 3):
        if editor_state(steps) == (boxes, labels):
            return steps
    pytest.fail(f"a mix of states on disk: boxes up to step {last_box_step}, labels {labels}")


def run_editor_and_kill(root: Path, kill_at: str = "", delay: float = 0.0) -> None:
    process = child(EDITOR, root, *IMAGES, env={"KILL_AT": kill_at})
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        if kill_at:
            process.wait(timeout=60)
        else:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def annotated_root(tmp_path) -> Path:
    root = tmp_path / "nih"
    root.mkdir()
    (root / "Data_Entry_2017.csv").write_text(ENTRY)
    return root


RANDOM = random.Random(11)


@pytest.mark.parametrize("kill_at", ["", "", "", "fsync:1", "fsync:6", "replace:3", "after_replace:2",
                                     "replace:40"])
def test_autosave_killed_anywhere_leaves_old_or_new_and_reopens(annotated_root, kill_at):
    """Three kills at random moments of a stream of edits, five at chosen points: the temp file written
    but not flushed or renamed, just renamed, and deep into the stream."""
    run_editor_and_kill(annotated_root, kill_at, delay=RANDOM.uniform(0.05, 0.8))
    steps = check_annotations_after_kill(annotated_root)
    store = open_store(open_dataset(annotated_root))  # the next start: not locked, temporaries gone
    assert not store.read_only
    assert sorted(p.name for p in store.folder.iterdir() if p.name.endswith(".tmp")) == []
    boxes, labels = editor_state(steps)
    for image in IMAGES:
        assert store.boxes(image) == boxes.get(image, ())
        assert store.finding_labels(image) == labels.get(image, "Mass")
    assert store.add_box(IMAGES[0], Box("Nodule", 1, 1, 2, 2))


def test_repeated_kills_accumulate_nothing(annotated_root):
    for delay in (0.1, 0.3, 0.2, 0.4):
        run_editor_and_kill(annotated_root, delay=delay)
    leftovers = [p.name for p in (annotated_root / ".cxr-workbench").iterdir() if p.name.endswith(".tmp")]
    open_store(open_dataset(annotated_root))
    after = [p.name for p in (annotated_root / ".cxr-workbench").iterdir() if p.name.endswith(".tmp")]
    assert after == [], f"{len(leftovers)} temporaries left by the kills were not removed"


# ---- prepare

PREPARER = """
import sys
from core.data.cache import PrepareConfig, prepare
""" + KILL_AT + """
print("ready", flush=True)
prepare(PrepareConfig(data=sys.argv[1], out=sys.argv[2], size=int(sys.argv[3])))
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def references(phantom_root, tmp_path_factory) -> dict[int, np.ndarray]:
    """The images of a cache at 32 px (the old one) and at 48 px (the one the killed prepare builds)."""
    base = tmp_path_factory.mktemp("reference")
    return {size: np.array(PreparedCache.open(prepare(PrepareConfig(data=str(phantom_root), out=str(base / str(size)),
                                                                    size=size)).path).images)
            for size in (32, 48)}


def check_cache_after_kill(out: Path, references: dict[int, np.ndarray]) -> str:
    """`out` is the old cache or the new one, whole; or, killed between the two renames, absent with the
    old one complete beside it. Return which."""
    if out.exists():
        cache = PreparedCache.open(out)
        assert len(cache.meta) == len(cache.images)
        assert np.array_equal(np.asarray(cache.images), references[cache.size]), "a partial cache is visible"
        return f"size {cache.size}"
    old = list(out.parent.glob(f".{out.name}.old-*"))
    assert len(old) == 1, sorted(p.name for p in out.parent.iterdir())
    assert np.array_equal(np.asarray(PreparedCache.open(old[0]).images), references[32])
    return "between the renames"


@pytest.mark.parametrize("kill_at", ["", "", "", "posix_fallocate:1", "pwrite:5", "replace:1",
                                     "after_replace:1", "after_replace:2"])
def test_prepare_killed_anywhere_leaves_a_whole_cache_and_the_next_prepare_recovers(
        phantom_root, references, tmp_path, kill_at):
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    process = child(PREPARER, phantom_root, out, 48, env={"KILL_AT": kill_at})
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        if not kill_at:
            time.sleep(RANDOM.uniform(0.0, 1.0))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if kill_at:
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    state = check_cache_after_kill(out, references)
    if kill_at == "after_replace:1":
        assert state == "between the renames"

    result = prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=48))
    assert np.array_equal(np.asarray(PreparedCache.open(out).images), references[48])
    assert result.reused == (state in ("size 48", "between the renames")), "a finished build is kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"], "leftovers of the kill remain"


# ---- export (generate) with --force: a fake generator, so no TensorFlow is needed

EXPORTER = """
import sys
from pathlib import Path
from tests.faults.test_wiring import run_export
""" + KILL_AT + """
print("ready", flush=True)
run_export(Path(sys.argv[1]), Path(sys.argv[2]), {"Mass": 3, "Nodule": 2}, force=True)
print("done", flush=True)
"""


def export_state(out: Path) -> str:
    """"earlier" or "new" (whole: every image the manifest lists is there); anything else fails."""
    manifest = json.loads((out / "manifest.json").read_text())
    if manifest.get("note") == "the earlier export":
        return "earlier"
    names = sorted(entry["image"] for entry in manifest["images"])
    assert len(names) == 5 and sorted(p.name for p in (out / "images").iterdir()) == names, "a partial export"
    assert len((out / "Data_Entry_2017.csv").read_text().splitlines()) == 6
    return "new"


# os.replace 1 and 2 are the two renames of the --force swap; unlink 1 is inside removing the old copy.
@pytest.mark.parametrize("kill_at, expected", [
    ("", ("earlier", "new")), ("", ("earlier", "new")), ("replace:1", ("earlier",)),
    ("after_replace:1", ("new",)), ("after_replace:2", ("new",)), ("after_unlink:1", ("new",))])
def test_export_force_killed_anywhere_is_restored_or_finished_at_the_next_start(tmp_path, kill_at, expected):
    from tests.faults.test_wiring import earlier_export, run_export

    run, work = tmp_path / "run", tmp_path / "work"
    run.mkdir()
    work.mkdir()
    out = earlier_export(work / "export")
    process = child(EXPORTER, run, out, env={"KILL_AT": kill_at})
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        if not kill_at:
            time.sleep(RANDOM.uniform(0.0, 0.5))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if kill_at:
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    if kill_at == "after_replace:1":
        assert not out.exists(), "the kill did not land between the renames"
    with pytest.raises(UserError, match="nothing to export"):  # the next start, stopping on a bad option
        run_export(run, out, {"Mass": 0}, force=True)
    assert export_state(out) in expected
    assert sorted(p.name for p in work.iterdir()) == ["export"], "leftovers of the kill remain"
