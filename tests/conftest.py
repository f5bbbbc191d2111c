"""Shared fixtures. GUI tests run offscreen; TensorFlow is kept quiet and on few threads."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow compute thread per process, this one and every child it starts (set before TensorFlow
# starts; inherited by the CLI and GUI child processes). The suite runs on two xdist workers, so more
# threads would only fight over the same two cores; and a single-threaded kernel adds up its numbers in
# one fixed order, so "resumes exactly" comparisons do not depend on how busy the machine is (with a
# shared pool, oneDNN splits a reduction differently when another op holds the pool's threads).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small phantom dataset in NIH layout, made once per test session. Treat it as read-only."""
    from core.data.phantoms import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "nih", per_class=12, size=256, seed=0)


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test():
    """A task still running after its test would write into a deleted tmp folder (and a QThread alive at
    exit makes Qt abort): stop and wait for every job the app started."""
    yield
    import sys

    workers = sys.modules.get("app.workers")
    if workers is not None:
        workers.stop_all_jobs()
