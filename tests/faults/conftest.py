"""The fault suite (issue 11): kills at random points, full and read-only disks, hostile files.

Every test here is marked `faults` (selected with `-m faults`) and runs in the normal suite. A small
real file system (tmpfs) is used for ENOSPC and EROFS where the machine allows mounting one (root in a
container); otherwise those tests skip and their twins that patch the write calls still run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A small decodable dataset in NIH layout (3 single-label images per class, 64 px). Read-only: copy it."""
    from core.data.phantoms import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("phantoms") / "nih", per_class=3, size=64, seed=3)


@pytest.fixture
def dataset(phantom_root, tmp_path) -> Path:
    """A private copy of the phantom dataset that the test may damage."""
    return Path(shutil.copytree(phantom_root, tmp_path / "nih"))


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """`make(size)` mounts a tmpfs of that size (e.g. "5m") and returns its path; `read_only(path)`
    remounts it read-only. Everything is unmounted after the test. Skips where mounting is not allowed."""
    mounted: list[Path] = []

    class Disk:
        @staticmethod
        def make(size: str) -> Path:
            where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
            if not _mount_tmpfs(where, size):
                pytest.skip("cannot mount a tmpfs here (needs root); the patched twin of this test still runs")
            mounted.append(where)
            return where

        @staticmethod
        def read_only(where: Path) -> None:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)

    yield Disk
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start `python -c code args...` with this checkout first on the path (stdout piped, text)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def holder():
    """`start(code, *args)` runs a child until it prints "held"; all children are killed afterwards."""
    started = []

    def start(code: str, *args) -> "subprocess.Popen":
        process = child(code, *args)
        started.append(process)
        line = process.stdout.readline()
        assert line.strip() == "held", process.stderr.read()
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python main.py ARGS` from this checkout."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args)], env=full_env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit 2, one `error:` line on stderr naming what is expected, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
