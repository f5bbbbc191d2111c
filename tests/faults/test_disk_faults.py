"""Issue 11, items 5 and 11: a full or read-only disk gives one line naming the path, exit 2, and leaves
nothing half-written; files come out with the permissions the umask asks for.

Each case runs on a real small tmpfs where the machine allows mounting one, and again with the write
calls patched to fail the same way, so the suite checks it everywhere."""
from __future__ import annotations

import errno
import os
import shutil

import numpy as np
import pytest

import core.data.cache as cache_module
from core.atomic import WriteError, atomic_write_bytes, atomic_write_text, reporting_write_errors
from core.data.annotations import Box, open_store
from core.data.cache import CacheError, PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset

from tests.faults.conftest import assert_one_line_error, cli


def visible_and_hidden(folder):
    return sorted(p.name for p in folder.iterdir())


def fill(disk) -> None:
    """Fill the disk up to the last block."""
    with open(disk / "filler", "wb") as stream:
        try:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


# ---- prepare

def test_prepare_on_a_full_disk_says_so_in_one_line_and_keeps_the_old_cache(phantom_root, small_disk):
    disk = small_disk.make("1m")
    out = disk / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    before = (out / "images.npy").read_bytes()
    done = cli("prepare", "--data", phantom_root, "--out", out, "--size", "256")  # 21 x 64 KB: over 1 MB
    assert_one_line_error(done, f"--out {out}: cannot write the cache (no space left on the disk", "nothing was kept")
    assert visible_and_hidden(disk) == ["cache"], "the partial cache and the lock are gone"
    assert (out / "images.npy").read_bytes() == before and PreparedCache.open(out).size == 32


def test_prepare_into_a_read_only_folder_says_so_in_one_line(phantom_root, small_disk):
    disk = small_disk.make("4m")
    out = disk / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    small_disk.read_only(disk)
    done = cli("prepare", "--data", phantom_root, "--out", out, "--size", "48")
    assert_one_line_error(done, f"--out {out}: cannot write there (the file system is read-only)")
    with pytest.raises(CacheError, match=r"new/cache: cannot write there \(the file system is read-only\)"):
        prepare(PrepareConfig(data=str(phantom_root), out=str(disk / "new" / "cache"), size=48))
    assert PreparedCache.open(out).size == 32


@pytest.mark.parametrize("failing", ["posix_fallocate", "pwrite", "to_csv"])
def test_a_refused_write_anywhere_in_prepare_removes_the_partial_cache(phantom_root, tmp_path, monkeypatch, failing):
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "to_csv":
        monkeypatch.setattr(cache_module.pd.DataFrame, "to_csv", no_space)
    elif failing == "posix_fallocate" and not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here")
    else:
        monkeypatch.setattr(cache_module.os, failing, no_space)
    with pytest.raises(CacheError, match=r"cannot write the cache \(no space left on the disk; the images need"):
        prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=48))
    assert visible_and_hidden(tmp_path) == ["cache"]
    assert PreparedCache.open(out).size == 32


def test_a_file_system_without_preallocation_still_works(phantom_root, tmp_path, monkeypatch):
    def unsupported(*args):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(cache_module.os, "posix_fallocate", unsupported, raising=False)
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    cache = PreparedCache.open(out)
    assert len(cache) == 21 and cache.images.any()


def test_a_read_only_place_is_refused_before_any_work(phantom_root, tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(cache_module, "open_dataset", lambda *a, **k: pytest.fail("read the dataset first"))
    with pytest.raises(CacheError, match=r"cannot write there \(the file system is read-only\)"):
        prepare(PrepareConfig(data=str(phantom_root), out=str(tmp_path / "cache"), size=32))


# ---- annotations

def test_an_autosave_on_a_full_disk_keeps_the_old_file_and_the_edit_for_later(phantom_root, small_disk):
    disk = small_disk.make("2m")
    root = shutil.copytree(phantom_root, disk / "nih")
    store = open_store(open_dataset(root))
    image = open_dataset(root).table["image"].iloc[0]
    assert store.add_box(image, Box("Mass", 1, 1, 5, 5))
    saved = store.boxes_path.read_bytes()
    fill(disk)
    assert store.add_box(image, Box("Nodule", 2, 2, 5, 5)) is False
    assert store.dirty and str(store.folder) in store.last_error and "no space left" in store.last_error
    assert store.boxes_path.read_bytes() == saved
    assert not [p for p in store.folder.iterdir() if p.name.endswith(".tmp")]
    (disk / "filler").unlink()
    store.save()
    assert not store.dirty and open_store(open_dataset(root)).boxes(image) == store.boxes(image)


def test_an_autosave_whose_fsync_fails_keeps_the_old_file(tmp_path, monkeypatch, phantom_root):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    store = open_store(open_dataset(root))
    image = open_dataset(root).table["image"].iloc[0]
    assert store.add_box(image, Box("Mass", 1, 1, 5, 5))
    saved = store.boxes_path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert store.add_box(image, Box("Nodule", 2, 2, 5, 5)) is False
    assert "no space left on the disk" in store.last_error and store.dirty
    assert store.boxes_path.read_bytes() == saved
    assert sorted(p.name for p in store.folder.iterdir()) == [".lock", "annotations.csv", "finding_labels.csv"]


def test_a_read_only_dataset_keeps_annotations_in_the_user_folder(phantom_root, small_disk, tmp_path):
    disk = small_disk.make("2m")
    root = shutil.copytree(phantom_root, disk / "nih")
    small_disk.read_only(disk)
    store = open_store(open_dataset(root), user_data_dir=tmp_path / "user")
    assert "not writable" in store.location_note and not store.read_only
    assert store.add_box(open_dataset(root).table["image"].iloc[0], Box("Mass", 1, 1, 5, 5))
    assert store.boxes_path.is_relative_to(tmp_path / "user")


# ---- the building blocks

def test_atomic_writes_on_a_full_disk_leave_the_old_file_and_no_temporary(small_disk):
    disk = small_disk.make("1m")
    target = disk / "file.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"\1" * (2 * 2**20))
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and visible_and_hidden(disk) == ["file.bin"]


def test_os_errors_become_one_line_naming_the_path(tmp_path):
    for code, reason in ((errno.ENOSPC, "no space left on the disk"), (errno.EROFS, "the file system is read-only"),
                         (errno.EACCES, "permission denied")):
        with pytest.raises(WriteError) as caught, reporting_write_errors(tmp_path / "x.csv"):
            raise OSError(code, os.strerror(code))
        assert str(caught.value) == f"{tmp_path / 'x.csv'}: cannot write ({reason})"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_written_atomically_follow_the_umask(tmp_path, umask, mode, phantom_root):
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
        root = shutil.copytree(phantom_root, tmp_path / "nih")
        store = open_store(open_dataset(root))
        store.add_box(open_dataset(root).table["image"].iloc[0], Box("Mass", 1, 1, 5, 5))
        prepare(PrepareConfig(data=str(root), out=str(tmp_path / "cache"), size=32))
    finally:
        os.umask(previous)
    for path in (tmp_path / "a", store.boxes_path, store.labels_path, tmp_path / "cache" / "images.npy",
                 tmp_path / "cache" / "meta.csv"):
        assert oct(path.stat().st_mode & 0o777) == oct(mode), path


def test_replacing_a_file_keeps_the_permissions_it_had(tmp_path):
    target = tmp_path / "shared.csv"
    target.write_text("old")
    target.chmod(0o664)
    atomic_write_bytes(target, b"new")
    assert target.stat().st_mode & 0o777 == 0o664 and target.read_bytes() == b"new"


def test_the_cache_array_file_is_a_valid_npy(tmp_path):
    path = tmp_path / "images.npy"
    with cache_module.ImageArrayFile(path, 5, 4) as array:
        for row in range(5):
            array[row] = np.full((4, 4), row, np.uint8)
        array.keep_rows(np.array([True, False, True, False, True]))
    loaded = np.load(path, allow_pickle=False)
    assert loaded.shape == (3, 4, 4) and [int(a[0, 0]) for a in loaded] == [0, 2, 4]


def test_a_private_file_keeps_the_mode_asked_for_whatever_the_umask(tmp_path):
    """The DICOM import's patient mapping must stay owner-only (0600), also when replaced."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "mapping.json", "{}", mode=0o600)
        atomic_write_text(tmp_path / "mapping.json", "{ }", mode=0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "mapping.json").stat().st_mode & 0o777 == 0o600
