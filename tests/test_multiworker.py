"""Scale-out proven, not only configured: two worker processes on this machine train one model together.

Each worker is `python main.py train ... --strategy multiworker` with its own TF_CONFIG (free ports on
127.0.0.1), exactly as on two machines. Checked: both end with identical weights, only the chief
(worker 0) writes RUN while worker 1 keeps its copy in RUN/worker_1, and both resume together.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[1]
# without the class guide and mode seeking: their updates across replicas are the mirrored test's subject
# (test_gan_trainer.py), and tracing them in four processes here cost ~40 s
TINY = ["--size", "32", "--batch", "6", "--guide-weight", "0", "--diversity-weight", "0", "--channels", "8",
        "--latent-dim", "16", "--log-every", "1", "--checkpoint-every", "100", "--seed", "5", "--threads", "1",
        "--precision", "float32"]


@pytest.fixture(scope="module")
def cache(demo_root, tmp_path_factory):
    from core.data.cache import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("multiworker") / "cache32"
    prepare(PrepareConfig(data=str(demo_root), out=str(out), size=32))
    return out


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _train_on_two_workers(cache: Path, run: Path, steps: int, resume: bool = False) -> list[dict]:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    command = [sys.executable, str(REPO / "main.py"), "train", "--data", str(cache), "--run", str(run),
               "--steps", str(steps), "--strategy", "multiworker", "--json", *TINY] + (["--resume"] if resume else [])
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, cwd=REPO))
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out[out.index("{"):]))
    return results


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    import core.gan.layers  # noqa: F401  (registers the generator's custom layers for loading)

    return keras.models.load_model(path, safe_mode=True).get_weights()


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = _weights(a), _weights(b)
    assert len(first) == len(second)
    differ = [i for i, (x, y) in enumerate(zip(first, second)) if not np.allclose(x, y, rtol=1e-5, atol=1e-6)]
    assert differ == [], f"weights {differ} of {len(first)} differ between the workers"


@pytest.mark.slow
def test_two_workers_train_one_model_write_apart_and_resume_together(cache, tmp_path):
    run = tmp_path / "run"
    chief, other = _train_on_two_workers(cache, run, steps=2)
    assert chief["step"] == other["step"] == 2
    assert Path(chief["run"]) == run and Path(other["run"]) == run / "worker_1"
    _assert_same_weights(run / "generator.keras", run / "worker_1" / "generator.keras")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "generator.keras",
                                                      "metrics.jsonl", "samples", "tensorboard", "worker_1"]
    assert not (run / "worker_0").exists()
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    before = _weights(run / "generator.keras")
    chief, other = _train_on_two_workers(cache, run, steps=4, resume=True)
    assert chief["step"] == other["step"] == 4
    _assert_same_weights(run / "generator.keras", run / "worker_1" / "generator.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(run / "generator.keras")))
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002.npz", "step_0000004.npz"]
