"""Is `prepare` faster than the plain way of building the same cache?

Reference: one process, a loop of `cv2.imread(path, IMREAD_GRAYSCALE)` + `cv2.resize(..., INTER_AREA)`
into a preallocated array, over exactly the files our prepare selects. Ours: `core.data.cache.prepare` end to
end (opening the dataset, fingerprinting, decoding on all cores, writing the memmap and the tables) into
a fresh folder each time, so it is never a cache hit. The files are read once beforehand so both run on
a warm page cache; the two are alternated --repeat times and the best time of each is compared (the
cores are shared, so the load average before and after is printed: a ratio measured on a busy machine
understates what two free cores give).

Data: a phantom dataset of 512 px PNGs (default 200 per class = 1,400 single-label images), generated
once into --data if that folder does not exist yet (about half a minute).  Target: ratio >= 1.7 on 2 cores.
Run: `.venv/bin/python bench/prepare.py [--data /tmp/cxr-bench-demo] [--size 128] [--repeat 5]`
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.cache import PrepareConfig, prepare, select_images  # noqa: E402
from core.data.dataset import open_dataset  # noqa: E402
from core.data.phantoms import write_demo_dataset  # noqa: E402


def reference_loop(paths: list[str], size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the plain loop."""
    start, cpu = time.perf_counter(), time.process_time()
    out = np.empty((len(paths), size, size), np.uint8)
    for i, path in enumerate(paths):
        out[i] = cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
    return time.perf_counter() - start, time.process_time() - cpu


def ours(data: Path, size: int, scratch: Path, run: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images prepared) of `prepare` into a fresh folder."""
    out = scratch / f"cache-{run}"
    start, cpu = time.perf_counter(), time.process_time()
    result = prepare(PrepareConfig(data=str(data), out=str(out), size=size))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(out)
    return seconds, cpu_seconds, result.prepared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "cxr-bench-demo"))
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "Data_Entry_2017.csv").is_file():
        print(f"writing {args.per_class} phantoms per class at 512 px into {data} ...", flush=True)
        write_demo_dataset(data, per_class=args.per_class, size=512, seed=0)
    index = open_dataset(data)
    paths = select_images(index, tuple(PrepareConfig(data="", out="").classes))["path"].tolist()
    for path in paths:  # warm the page cache for both contenders
        Path(path).read_bytes()

    load_before = os.getloadavg()[0]
    loop_runs, our_runs = [], []
    with tempfile.TemporaryDirectory(dir=data.parent) as scratch:
        for run in range(args.repeat):
            loop_runs.append(reference_loop(paths, args.size))
            seconds, cpu_seconds, prepared = ours(data, args.size, Path(scratch), run)
            assert prepared == len(paths), (prepared, len(paths))
            our_runs.append((seconds, cpu_seconds))

    (loop, loop_cpu), (best, best_cpu) = min(loop_runs), min(our_runs)
    n = len(paths)
    print(f"\n{n} PNGs of 512x512 -> {args.size}x{args.size}, {os.cpu_count()} cores, best of {args.repeat}")
    print(f"{'method':<44} {'seconds':>8} {'ms/image':>9} {'cpu s':>6} {'cores used':>10} {'ratio':>6}")
    for name, wall, cpu in (("reference: 1 process imread + resize(AREA)", loop, loop_cpu),
                            ("ours: core.data.cache.prepare (end to end)", best, best_cpu)):
        print(f"{name:<44} {wall:>8.2f} {wall / n * 1000:>9.2f} {cpu:>6.2f} {cpu / wall:>10.2f} {loop / wall:>6.2f}")
    print(f"all runs (wall s): reference {', '.join(f'{t:.2f}' for t, _ in loop_runs)}; "
          f"ours {', '.join(f'{t:.2f}' for t, _ in our_runs)}")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"ratio {loop / best:.2f}x (target >= 1.7x on 2 cores; 'cores used' = CPU s / wall s shows what "
          f"the shared machine gave)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
