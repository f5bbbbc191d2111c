"""Keep TensorFlow's start-up chatter off the user's terminal; let every other line through.

On a CPU-only machine TensorFlow's native code prints, on every start:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... (303)

and, while training, `E ... remapper failed: ... LeakyReluGrad ...` from the graph optimiser (harmless,
see FINDINGS.md). No log level hides all of them: the first two are written before absl logging is
initialised, which ignores every threshold (abseil-cpp #1718), and the others are ERROR lines, so
`TF_CPP_MIN_LOG_LEVEL=3` would also hide real errors. So `quiet_native_logs()`:

- sets `TF_CPP_MIN_LOG_LEVEL=1` (hides TensorFlow's C++ INFO banners: oneDNN, CPU features) unless
  the user set it; `TF_CPP_MIN_LOG_LEVEL=0` asks for everything and turns the filter off too;
- sends what native code writes to the standard-error descriptor through a small filter *process*
  that drops the lines matching `NOISE` and passes every other line on unchanged. A process rather
  than a thread, so that a fatal message written just before TensorFlow aborts still gets printed;
- points Python's `sys.stderr` straight at the terminal, so tracebacks, logging and the CLI's
  progress bar (which needs to know it is on a TTY) never go through the filter.

Child processes inherit the environment and the filtered descriptor, so the one call in `main.py`
covers the app's worker processes too. POSIX only; on Windows just the environment variable is set.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

MARKER = "CXR_WORKBENCH_QUIET_STDERR"   # set once the filter runs; child processes inherit it
_NATIVE_LINE = r"^(?:[IWE]\d{4} [^\]]*\] |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\]]*\] )"
NOISE = re.compile("|".join((
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _NATIVE_LINE + r"(?:Could not find cuda drivers on your machine"
                   r"|failed call to cuInit"
                   r"|remapper failed"
                   r"|Unable to register cu(?:DNN|FFT|BLAS) factory"
                   r"|computation placer already registered"
                   r"|oneDNN custom operations are on"
                   r"|This TensorFlow binary is optimized to use available CPU instructions"
                   r"|TF-TRT Warning: Could not find TensorRT)",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.",
)))


def is_noise(line: str) -> bool:
    """True for a line of TensorFlow chatter that is not the user's business."""
    return NOISE.search(line) is not None


def quiet_native_logs() -> None:
    """Call first thing in a process that may import TensorFlow (idempotent, inherited by children)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or os.environ.get(MARKER) or os.name == "nt":
        return
    try:
        os.fstat(2)
    except OSError:   # no standard error at all (started without a terminal): nothing to filter
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    try:
        subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=read_end,
                         stdout=terminal, stderr=terminal, close_fds=True)
    except OSError:
        os.close(terminal)
        return
    finally:
        os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = open(terminal, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)
    os.environ[MARKER] = "1"


def _filter(source, sink) -> None:
    """Copy lines from `source` to `sink` (both binary), dropping noise; ends when every writer has closed."""
    for line in source:
        if not is_noise(line.decode("utf-8", "replace")):
            sink.write(line)
            sink.flush()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl+C stops the program, which then closes our input
    _filter(sys.stdin.buffer, sys.stdout.buffer)
