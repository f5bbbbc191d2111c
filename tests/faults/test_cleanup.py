"""Issue 11, item 10: what killed jobs left behind is removed at the next start of the same job, and a
folder swap cut in half by a kill is finished or undone; nothing that is not ours is ever touched."""
from __future__ import annotations

import os
import shutil

import pytest

from core.cleanup import EVALUATION_LEFTOVERS, clean_run_folder, recover_swap, remove_leftovers
from core.data.annotations import Box, open_store
from core.data.cache import PrepareConfig, PreparedCache, prepare
from core.data.dataset import open_dataset

from tests.faults.conftest import child


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def make_export(folder, text: str):
    folder.mkdir()
    (folder / "manifest.json").write_text(text)
    return folder


def test_an_interrupted_swap_with_a_finished_new_copy_is_finished(tmp_path):
    make_export(tmp_path / ".exp.old-1a2b", "old")
    make_export(tmp_path / ".exp.partial-3c4d", "new")
    (tmp_path / ".exp.partial-dead").mkdir()  # killed while generating: no manifest
    actions = recover_swap(tmp_path / "exp", ("partial",), lambda f: (f / "manifest.json").is_file())
    assert (tmp_path / "exp" / "manifest.json").read_text() == "new"
    assert names(tmp_path) == ["exp"]
    assert "finished an interrupted replacement" in actions[0] and "removed 2 leftover(s)" in actions[1]


def test_an_interrupted_swap_without_a_finished_copy_restores_the_old_one(tmp_path):
    make_export(tmp_path / ".exp.old-1a2b", "old")
    (tmp_path / ".exp.partial-dead").mkdir()
    recover_swap(tmp_path / "exp", ("partial",), lambda f: (f / "manifest.json").is_file())
    assert (tmp_path / "exp" / "manifest.json").read_text() == "old" and names(tmp_path) == ["exp"]


def test_leftovers_beside_an_intact_target_are_removed_and_others_kept(tmp_path):
    make_export(tmp_path / "exp", "current")
    make_export(tmp_path / ".exp.old-1a2b", "old")
    make_export(tmp_path / ".exp.partial-3c4d", "new")
    for keep in ("exp2", ".exp2.old-1111", ".exp.notes", "exp.old-1"):
        (tmp_path / keep).mkdir()
    recover_swap(tmp_path / "exp", ("partial",), lambda f: (f / "manifest.json").is_file())
    assert (tmp_path / "exp" / "manifest.json").read_text() == "current"
    assert names(tmp_path) == [".exp.notes", ".exp2.old-1111", "exp", "exp.old-1", "exp2"]


def test_nothing_to_recover_changes_nothing(tmp_path):
    assert recover_swap(tmp_path / "exp", ("partial",), lambda f: True) == []
    assert names(tmp_path) == []


def test_run_folder_leftovers_are_removed_and_the_run_kept(tmp_path):
    run = tmp_path / "run"
    kept = ["config.json", "metrics.jsonl", "generator.keras", "checkpoints/step_0000500.npz",
            "samples/step_0000500.png", "evaluation/report.json", "evaluation/real_cache_64/cache.json"]
    left = [".generator.tmp.keras", ".write_test", ".config.json.k2j4.tmp", ".metrics.jsonl.x1.tmp",
            "checkpoints/.step_0001000.npz.ab12cd.tmp", "samples/.step_0001000.png.q9.tmp"]
    evaluation = ["evaluation/.report.json.tmp", "evaluation/.judge.tmp.keras"]
    for name in kept + left + evaluation:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x")
    removed = clean_run_folder(run)
    assert sorted(p.relative_to(run).as_posix() for p in removed) == sorted(left)
    assert all((run / name).exists() for name in evaluation), "an evaluation may be running beside the run"
    removed = remove_leftovers(run / "evaluation", EVALUATION_LEFTOVERS)
    assert sorted(p.relative_to(run).as_posix() for p in removed) == sorted(evaluation)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == sorted(kept)
    assert clean_run_folder(tmp_path / "no-such-run") == []


def test_annotation_temporaries_of_killed_autosaves_go_at_the_next_open(phantom_root, tmp_path):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    folder = root / ".cxr-workbench"
    folder.mkdir()
    leftovers = [f".annotations.csv.{i:04x}.tmp" for i in range(17)] + [".finding_labels.csv.x.tmp", ".probe-abc"]
    for name in leftovers + ["my-notes.tmp"]:
        (folder / name).write_text("partial")
    store = open_store(open_dataset(root))
    assert names(folder) == [".lock", "my-notes.tmp"]
    assert store.add_box(open_dataset(root).table["image"].iloc[0], Box("Mass", 1, 1, 2, 2))


def test_temporaries_are_left_alone_while_another_process_writes(phantom_root, tmp_path):
    root = shutil.copytree(phantom_root, tmp_path / "nih")
    process = child("""
        import sys, time
        from core.data.annotations import open_store
        from core.data.dataset import open_dataset
        store = open_store(open_dataset(sys.argv[1]))
        print("held", flush=True)
        time.sleep(600)
    """, root)
    try:
        assert process.stdout.readline().strip() == "held"
        live = root / ".cxr-workbench" / ".annotations.csv.live.tmp"
        live.write_text("being written by the other window")
        store = open_store(open_dataset(root))
        assert store.read_only and live.exists()
    finally:
        process.kill()
        process.wait()


def test_prepare_removes_killed_builds_and_old_probes(phantom_root, tmp_path):
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    (tmp_path / ".cache.building-99999-dead").mkdir()
    (tmp_path / ".cache.building-99999-dead" / "images.npy").write_bytes(b"\0" * 1000)
    (tmp_path / ".write-test-k2l3m4").write_bytes(b"")
    (tmp_path / ".other.building-1-2").mkdir()  # another cache's: not ours to judge
    assert prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32)).reused
    assert names(tmp_path) == [".other.building-1-2", "cache"]


@pytest.mark.parametrize("finished", [True, False])
def test_prepare_finishes_or_undoes_a_swap_cut_by_a_kill(phantom_root, tmp_path, finished):
    out = tmp_path / "cache"
    prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=32))
    os.replace(out, tmp_path / ".cache.old-1-ab")  # killed between the two renames
    if finished:
        prepare(PrepareConfig(data=str(phantom_root), out=str(tmp_path / "new"), size=48))
        os.replace(tmp_path / "new", tmp_path / ".cache.building-1-cd")
    assert PreparedCache.open(tmp_path / ".cache.old-1-ab").size == 32
    result = prepare(PrepareConfig(data=str(phantom_root), out=str(out), size=48 if finished else 32))
    assert result.reused, "the recovered cache is the one asked for: nothing to rebuild"
    assert names(tmp_path) == ["cache"]
