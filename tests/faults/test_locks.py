"""Issue 11, item 1: one writer per folder. A second process is told which process holds the folder; a
kill -9 of the holder frees it at once; two windows never both write the same annotations."""
from __future__ import annotations

import os
import shutil
import signal

import pytest

from core.data.annotations import AnnotationError, Box, open_store
from core.data.cache import PrepareConfig, prepare
from core.data.dataset import open_dataset
from core.locks import FolderInUse, acquire, hold_lock, lock_file_for


pytestmark = pytest.mark.skipif(os.name != "posix", reason="the locks are POSIX flock")

HOLD = """
import sys, time
from core.locks import hold_lock
with hold_lock(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(600)
"""

HOLD_STORE = """
import sys, time
from core.data.annotations import Box, open_store
from core.data.dataset import open_dataset
index = open_dataset(sys.argv[1])
store = open_store(index)
assert store.add_box(index.table["image"].iloc[0], Box("Mass", 1, 1, 5, 5)), store.last_error
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_holder_is_told_which_process_holds_the_folder(holder, tmp_path):
    run = tmp_path / "run"
    process = holder(HOLD, run)
    with pytest.raises(FolderInUse) as caught:
        with hold_lock(run, "run folder"):
            pass
    assert str(caught.value).startswith(f"{run} is in use by process {process.pid} (run folder)")
    assert caught.value.pid == process.pid


def test_a_killed_holder_frees_the_folder_at_once(holder, tmp_path):
    run = tmp_path / "run"
    process = holder(HOLD, run)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert lock_file_for(run).exists(), "a kill leaves the lock file..."
    with hold_lock(run, "run folder") as lock:  # ...but not the lock
        assert lock.held
    assert not lock_file_for(run).exists(), "a release removes the lock file"


def test_two_holders_in_one_process_are_refused_too(tmp_path):
    with hold_lock(tmp_path / "export", "export target"):
        with pytest.raises(FolderInUse, match=r"in use by process \d+ \(this one\) \(export target\)"):
            with hold_lock(tmp_path / "export", "export target"):
                pass
    with hold_lock(tmp_path / "export", "export target"):
        pass


def test_a_lock_file_deleted_by_its_holder_cannot_let_two_in(tmp_path, monkeypatch):
    """The release race: B opens the lock file, A deletes it and releases, B locks the deleted file. B must
    notice that its file is no longer the one at the path and lock the new one, or C would get in too."""
    import core.locks as locks

    path = tmp_path / ".x.lock"
    first = acquire(path, "test")
    real_flock = locks.fcntl.flock
    calls = []

    def flock_after_release(fd, operation):
        if not calls:
            first.release()  # A lets go between B's open and B's flock
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(locks.fcntl, "flock", flock_after_release)
    second = acquire(path, "test")
    monkeypatch.setattr(locks.fcntl, "flock", real_flock)
    assert len(calls) == 2, "B must have started over on the new file"
    with pytest.raises(FolderInUse):
        acquire(path, "test")
    second.release()


def test_a_second_window_opens_the_annotations_read_only_and_says_why(holder, phantom_root, tmp_path):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    process = holder(HOLD_STORE, root)
    written = (root / ".cxr-workbench" / "annotations.csv").read_bytes()
    index = open_dataset(root)
    store = open_store(index)
    assert store.read_only
    assert f"in use by process {process.pid}" in store.location_note and "not saved" in store.location_note
    image = index.table["image"].iloc[1]
    assert store.add_box(image, Box("Nodule", 1, 1, 5, 5)) is False
    assert store.dirty and "in use by process" in store.last_error
    with pytest.raises(AnnotationError):
        store.save()
    assert (root / ".cxr-workbench" / "annotations.csv").read_bytes() == written

    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    again = open_store(open_dataset(root))
    assert not again.read_only and again.add_box(image, Box("Nodule", 1, 1, 5, 5))


def test_in_one_process_the_newest_store_writes_and_the_older_turns_read_only(phantom_root, tmp_path):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    image = open_dataset(root).table["image"].iloc[0]
    older = open_store(open_dataset(root))
    assert older.add_box(image, Box("Mass", 1, 1, 5, 5))
    newer = open_store(open_dataset(root))  # the app opened the same dataset again
    assert not newer.read_only and older.read_only
    assert newer.boxes(image) == older.boxes(image), "the newer store read what the older one saved"
    assert older.add_box(image, Box("Nodule", 1, 1, 5, 5)) is False
    assert "reopened" in older.last_error
    assert newer.add_box(image, Box("Effusion", 1, 1, 5, 5))
    newer.close()
    assert not (root / ".cxr-workbench" / ".lock").exists()
    assert not open_store(open_dataset(root)).read_only


def test_a_store_dropped_without_close_frees_the_lock(phantom_root, tmp_path):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    store = open_store(open_dataset(root))
    assert (root / ".cxr-workbench" / ".lock").exists()
    del store
    assert not (root / ".cxr-workbench" / ".lock").exists()


def test_reading_saved_edits_takes_no_lock(holder, phantom_root, tmp_path):
    """`prepare` applies the app's label edits while the app holds the store: it must not wait or fail."""
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    holder(HOLD_STORE, root)
    result = prepare(PrepareConfig(data=str(root), out=str(tmp_path / "cache"), size=32))
    assert result.prepared > 0


def test_two_prepares_into_one_cache_folder(holder, phantom_root, tmp_path):
    out = tmp_path / "cache"
    process = holder(HOLD, out)  # the lock a running prepare holds
    with pytest.raises(FolderInUse, match=f"{out} is in use by process {process.pid}"):
        prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.lock"]
