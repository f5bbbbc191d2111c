"""How fast and how lean is `open_dataset` on a dataset the size of the real NIH one?

Generates, in a temporary folder, a synthetic v2020-style dataset of the real size: 112,120 rows over
30,805 patients in a gzipped `Data_Entry_2017_v2020.csv` with the real label frequencies, a BBox list
of 984 boxes on 880 images (6- and 9-field rows, `Infiltrate`), the official split lists, and 112,120
EMPTY `.png` files spread over `images_001..images_012/images` (opening never decodes, so empty files
measure the same listing work). Then it measures, each in a fresh process:

- open time: wall seconds of `open_dataset` (imports excluded), best of --repeat runs, and the same for
  the naive way (pandas `read_csv`, `str.get_dummies`, one `os.path.exists` per row and folder) as a
  yardstick that stays meaningful when the shared machine is busy;
- peak RSS of that process and its RSS after imports, and the tracemalloc peak of `open_dataset` alone;
- multi-hot: our step vs `Series.str.get_dummies("|")` on the same 112,120 label strings (ratio).

Targets: under 1.5 s and under 300 MB.  Run: `.venv/bin/python bench/index_open.py [--keep DIR]`
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.labels import NIH_LABELS  # noqa: E402

ROWS, PATIENTS, BOXES, BOXED_IMAGES, FOLDERS = 112_120, 30_805, 984, 880, 12
# Images carrying each label in the v2020 file (NIH_FORMAT.md), in NIH_LABELS order.
LABEL_IMAGES = dict(zip(NIH_LABELS, (60361, 11559, 2776, 4667, 2303, 13317, 2516, 1686, 227, 19894, 5782, 6331,
                                     3385, 1431, 5302)))
BOX_LABELS = {"Atelectasis": 180, "Effusion": 153, "Cardiomegaly": 146, "Infiltrate": 123, "Pneumonia": 120,
              "Pneumothorax": 98, "Mass": 85, "Nodule": 79}
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def finding_labels(rng: np.random.Generator) -> list[str]:
    """Label strings with roughly the real per-label frequencies: 'No Finding' alone, else 1-4 findings."""
    findings = [name for name in NIH_LABELS if name != "No Finding"]
    weights = np.array([LABEL_IMAGES[name] for name in findings], dtype=float)
    weights /= weights.sum()
    sick = ROWS - LABEL_IMAGES["No Finding"]
    extra_labels = sum(LABEL_IMAGES[name] for name in findings) - sick
    counts = 1 + rng.poisson(extra_labels / sick, size=ROWS).clip(0, 3)
    labels = []
    for count, healthy in zip(counts, rng.permutation(ROWS) < LABEL_IMAGES["No Finding"]):
        if healthy:
            labels.append("No Finding")
        else:
            chosen = rng.choice(len(findings), size=count, replace=False, p=weights)
            labels.append("|".join(findings[i] for i in sorted(chosen)))
    return labels


def generate(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    patients = np.sort(np.concatenate([np.arange(1, PATIENTS + 1), rng.integers(1, PATIENTS + 1, ROWS - PATIENTS)]))
    follow_up = np.zeros(ROWS, dtype=int)
    for i in range(1, ROWS):
        follow_up[i] = follow_up[i - 1] + 1 if patients[i] == patients[i - 1] else 0
    names = [f"{p:08d}_{f:03d}.png" for p, f in zip(patients, follow_up)]
    labels = finding_labels(rng)
    ages = rng.integers(1, 96, PATIENTS + 1)[patients]
    sexes = np.where(rng.random(PATIENTS + 1) < 0.565, "M", "F")[patients]
    views = np.where(rng.random(ROWS) < 0.6, "PA", "AP")
    lines = [HEADER] + [f"{n},{lab},{f},{p},{a},{s},{v},2500,2048,0.168,0.168"
                        for n, lab, f, p, a, s, v in zip(names, labels, follow_up, patients, ages, sexes, views)]
    (root / "Data_Entry_2017_v2020.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    boxed = rng.choice(ROWS, BOXED_IMAGES, replace=False)
    owners = np.concatenate([boxed, rng.choice(boxed, BOXES - BOXED_IMAGES)])
    box_labels = rng.permutation([name for name, n in BOX_LABELS.items() for _ in range(n)])
    box_lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    for i, (row, label) in enumerate(zip(owners, box_labels)):
        x, y, w, h = rng.uniform(50, 700, 2).tolist() + rng.uniform(20, 300, 2).tolist()
        box_lines.append(f"{names[row]},{label},{x},{y},{w},{h}" + (",,," if i % 2 else ""))
    (root / "BBox_List_2017.csv").write_text("\r\n".join(box_lines) + "\r\n")

    test_patient = rng.random(PATIENTS + 1) < 0.22
    in_test = test_patient[patients]
    (root / "test_list.txt").write_text("\n".join(n for n, t in zip(names, in_test) if t) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n, t in zip(names, in_test) if not t) + "\n")

    per_folder = -(-ROWS // FOLDERS)
    for k in range(FOLDERS):
        folder = root / f"images_{k + 1:03d}" / "images"
        folder.mkdir(parents=True)
        for name in names[k * per_folder:(k + 1) * per_folder]:
            os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))


NAIVE = """
import glob, os
import pandas as pd
def naive_open(root):
    # The obvious way: pandas reads the CSV, str.get_dummies makes the multi-hot, one stat per row and folder.
    table = pd.read_csv(root + "/Data_Entry_2017_v2020.csv.gz")
    table["Finding Labels"].str.get_dummies("|")
    folders = sorted(glob.glob(root + "/images_*/images"))
    return [next((f + "/" + n for f in folders if os.path.exists(f + "/" + n)), "") for n in table["Image Index"]]
"""

MEASURE_OPEN = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from core.data.dataset import open_dataset
rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    index = open_dataset(sys.argv[2])
    times.append(time.perf_counter() - start)
    del index
rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
""" + NAIVE + """
naive = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    naive_open(sys.argv[2])
    naive.append(time.perf_counter() - start)
tracemalloc.start()
index = open_dataset(sys.argv[2])
traced = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"best": min(times), "worst": max(times), "naive": min(naive), "rss_imports": rss_imports, "rss_peak": rss_peak,
                  "traced": traced, "summary": index.summary()}))
"""

MEASURE_MULTI_HOT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, pandas as pd
from core.data.dataset import _multi_hot
from core.labels import NIH_LABELS
text = pd.read_csv(sys.argv[2] + "/Data_Entry_2017_v2020.csv.gz", usecols=[1], dtype=str).iloc[:, 0]
lines = np.arange(len(text))
def best(f, n=3):
    out = []
    for _ in range(n):
        t = time.perf_counter(); result = f(); out.append(time.perf_counter() - t)
    return min(out), result
ours, ours_result = best(lambda: _multi_hot(text.to_numpy(), lines, "bench", []))
ref, ref_result = best(lambda: text.str.get_dummies("|").reindex(columns=list(NIH_LABELS), fill_value=0))
assert (ref_result.to_numpy().astype(bool) == ours_result).all(), "multi-hot results differ"
print(json.dumps({"ours": ours, "get_dummies": ref}))
"""


def measure(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, str(ROOT), *args], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temp one")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = args.keep or Path(temp) / "nih"
        if not (root / "Data_Entry_2017_v2020.csv.gz").exists():
            root.mkdir(parents=True, exist_ok=True)
            generate(root)
        opened = measure(MEASURE_OPEN, str(root), str(args.repeat))
        hot = measure(MEASURE_MULTI_HOT, str(root))
    s = opened["summary"]
    print(f"dataset: {s['rows']} rows, {s['patients']} patients, {s['images_found']} files found, "
          f"{s['boxes']} boxes, splits {s['splits']}, {len(s['problems'])} problem lines")
    rows = [
        ("open_dataset wall time, best of %d (s)" % args.repeat, f"{opened['best']:.3f}", "< 1.5",
         "ok" if opened["best"] < 1.5 else "MISSED"),
        ("open_dataset wall time, worst (s)", f"{opened['worst']:.3f}", "", ""),
        ("naive open: read_csv + get_dummies + stat per row (s)", f"{opened['naive']:.3f}", "", ""),
        ("open speed-up (naive / ours)", f"{opened['naive'] / opened['best']:.1f}x", "", ""),
        ("process peak RSS (MB)", f"{opened['rss_peak']:.0f}", "< 300", "ok" if opened["rss_peak"] < 300 else "MISSED"),
        ("  of which after imports (MB)", f"{opened['rss_imports']:.0f}", "", ""),
        ("tracemalloc peak of open_dataset (MB)", f"{opened['traced']:.0f}", "", ""),
        ("multi-hot, ours (ms)", f"{hot['ours'] * 1000:.1f}", "", ""),
        ("multi-hot, str.get_dummies (ms)", f"{hot['get_dummies'] * 1000:.1f}", "", ""),
        ("multi-hot speed-up (get_dummies / ours)", f"{hot['get_dummies'] / hot['ours']:.1f}x", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>9}  {'target':>7}")
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}  {value:>9}  {target:>7}  {verdict}")


if __name__ == "__main__":
    main()
