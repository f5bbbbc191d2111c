"""Does training in the app keep the window responsive? GUI-thread gaps while the Train tab trains.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_responsiveness.py [--seconds 60] [--size 64]

A 10 ms timer on the GUI thread records the time between its ticks while the Train tab runs core's
training task in its child process (lowered priority), once with TensorFlow on one thread and once on
all cores (threads = 0, the app's default). Prints the worst and the 99th-percentile gap of each and
the training speed, beside the 100 ms stall limit. Run it on an idle machine: other processes on the
same cores show up as gaps that are not the app's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def measure(panel, app, cache: Path, run: Path, threads: int, seconds: float, size: int) -> dict:
    from PySide6.QtCore import QElapsedTimer, QTimer

    panel.run_edit.setText(str(run))
    panel.cache_edit.setText(str(cache))
    panel.form.set_values({"size": size, "threads": threads, "log_every": 10, "sample_every": 100})
    panel.budget.setValue(seconds / 60 + 2)
    gaps: list[int] = []
    clock = QElapsedTimer()
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    panel.start(resume=False)
    while panel.plots.rows == [] and panel.runner is not None:   # wait for the first rows: past compiling
        app.processEvents()
        time.sleep(0.005)
    clock.start()
    timer.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    rates = [row["images_per_s"] for row in panel.plots.rows if "images_per_s" in row]
    panel.stop_and_wait()
    gaps.sort()
    return {"threads": threads or f"all ({os.cpu_count()})", "worst_ms": gaps[-1] if gaps else None,
            "p99_ms": gaps[int(len(gaps) * 0.99)] if gaps else None,
            "images_per_s": round(sum(rates[-5:]) / max(1, len(rates[-5:])), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured training time per setting")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.train_panel import TrainPanel
    from core.data.cache import PrepareConfig, prepare
    from core.data.phantoms import write_demo_dataset

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="gui_bench_"))
    demo = write_demo_dataset(work / "nih", per_class=40, size=256)
    cache = prepare(PrepareConfig(data=str(demo), out=str(work / "cache"), size=args.size)).path
    panel = TrainPanel(QSettings(str(work / "settings.ini"), QSettings.IniFormat))
    rows = [measure(panel, app, cache, work / f"run{threads}", threads, args.seconds, args.size)
            for threads in (1, 0)]
    print(f"load average before: {os.getloadavg()[0]:.2f} (the stall limit is 100 ms)")
    print(f"{'TF threads':>12}  {'worst gap ms':>12}  {'p99 gap ms':>10}  {'images/s':>9}")
    for row in rows:
        print(f"{row['threads']!s:>12}  {row['worst_ms']!s:>12}  {row['p99_ms']!s:>10}  {row['images_per_s']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
