"""TensorFlow's start-up chatter is dropped from standard error; every other line still reaches the user."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.quiet import is_noise

ROOT = Path(__file__).resolve().parents[1]
NOISE_LINES = [  # as printed by TensorFlow 2.21 on this CPU-only machine, and by its graph optimiser
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795654122.496777    9307 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "E0000 00:00:1795654129.051256    9307 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "2024-05-01 10:00:00.123456: E tensorflow/core/grappler/optimizers/meta_optimizer.cc:961] remapper failed: "
    "INVALID_ARGUMENT: Mutation::Apply error: fanout 'gradient_tape/LeakyReluGrad' exist for missing node 'BiasAdd'",
    "I0000 00:00:1795654122.631305    9307 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results",
]
REAL_LINES = [
    "E0000 00:00:1795654129.051256    9307 op_kernel.cc:1857] OP_REQUIRES failed at conv_ops.cc:12 : "
    "RESOURCE_EXHAUSTED: OOM when allocating tensor",
    "F0000 00:00:1.0 1 check.cc:1] Check failed: size > 0",
    "Traceback (most recent call last):",
    "error: /data/nih: not a folder",
    "remapper failed",   # our own words, not a TensorFlow log line
]


@pytest.mark.parametrize("line", NOISE_LINES)
def test_tensorflow_chatter_is_noise(line):
    assert is_noise(line)


@pytest.mark.parametrize("line", REAL_LINES)
def test_real_errors_are_not_noise(line):
    assert not is_noise(line)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CXR_WORKBENCH_QUIET_STDERR")}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=120)


WRITE_LINES = f"""
    import os, sys
    from core.quiet import quiet_native_logs
    quiet_native_logs()
    for line in {NOISE_LINES + REAL_LINES[:2]!r}:
        os.write(2, (line + "\\n").encode())   # as native code writes: straight to the descriptor
    print("from python", file=sys.stderr)
"""


def test_native_lines_are_filtered_and_python_output_goes_straight_through():
    result = _run(WRITE_LINES)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert sorted(lines) == sorted(REAL_LINES[:2] + ["from python"])


def test_tf_cpp_min_log_level_0_shows_everything():
    result = _run(WRITE_LINES, TF_CPP_MIN_LOG_LEVEL="0")
    assert all(line in result.stderr for line in NOISE_LINES)


def test_a_fatal_message_just_before_an_abort_is_still_printed():
    result = _run("""
        import os
        from core.quiet import quiet_native_logs
        quiet_native_logs()
        os.write(2, b"F0000 00:00:1.0 1 check.cc:1] Check failed: size > 0\\n")
        os.abort()
    """)
    assert result.returncode != 0
    assert "Check failed: size > 0" in result.stderr


def test_worker_processes_inherit_the_filter():
    result = _run(f"""
        import multiprocessing, os
        from core.quiet import quiet_native_logs
        quiet_native_logs()
        lines = {(NOISE_LINES[2] + chr(10) + "child: a real problem" + chr(10)).encode()!r}
        process = multiprocessing.get_context("spawn").Process(target=os.write, args=(2, lines))
        process.start()
        process.join()
    """)
    assert "child: a real problem" in result.stderr
    assert "cuInit" not in result.stderr


@pytest.mark.slow
def test_tensorflow_itself_starts_without_chatter():
    result = _run("""
        from core.quiet import quiet_native_logs
        quiet_native_logs()
        import tensorflow as tf
        print(float(tf.reduce_sum(tf.ones(3))))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3.0"
    assert result.stderr.strip() == "", result.stderr
