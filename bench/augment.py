"""Does the synthetic top-up help on NIH-proportioned data? The augmentation bench with its bounds.

    python bench/augment.py data WORK            # phantoms -> 64 px cache -> WORK/nih_cache (NIH proportions)
    python bench/augment.py train WORK           # the default sngan on it -> WORK/run
    python bench/augment.py bench WORK [--seeds 3] [--arms ...] [--recipe recommended|none]
    python bench/augment.py bounds WORK          # oracle (fresh real phantoms) and random-label generators
    python bench/augment.py screening WORK       # a 60%-adherence stand-in, plain vs the recommended recipe

`data` writes the demo phantoms (`main.py demo-data`, 128 px), prepares them at 64 px and keeps, from
patients outside a balanced test split (40 single-label images per class, split by patient), the
training counts of `NIH_COUNTS`: the NIH single-label frequencies (No Finding 60,361 ... Mass 2,139)
compressed to 280 ... 30 by a power law (counts ~ n^0.669), so the order of the classes is kept and the
rarest has a few dozen images. Until the NIH-proportioned demo data lands on main (`--proportions nih`),
this is the stand-in. The bench prints one table; `bounds` runs the same bench with an oracle generator
(new phantoms of the right class: the upper bound) and a random-label one (the lower bound), so the
verdict logic is seen to separate them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

NIH_COUNTS = {"No Finding": 280, "Infiltration": 82, "Atelectasis": 47, "Effusion": 45, "Nodule": 35,
              "Pneumothorax": 30, "Mass": 30}
TEST_PER_CLASS = 40
PHANTOM_SIZE = 128
SIZE = 64


def build_nih_cache(work: Path, seed: int = 0) -> Path:
    """WORK/nih_cache: a prepared cache with NIH-proportioned train counts and a balanced test split."""
    import pandas as pd

    from core.data.cache import PrepareConfig, PreparedCache, prepare
    from core.data.phantoms import write_demo_dataset

    out = work / "nih_cache"
    if (out / "cache.json").is_file():
        return out
    per_class = max(NIH_COUNTS.values()) + TEST_PER_CLASS + 40
    root = write_demo_dataset(work / "phantoms", per_class=per_class, size=PHANTOM_SIZE, seed=seed)
    full = prepare(PrepareConfig(data=str(root), out=str(work / "full_cache"), size=SIZE)).path
    cache = PreparedCache.open(full)
    meta = cache.meta.reset_index(drop=True)
    classes = cache.classes
    rng = np.random.default_rng(seed)
    patients = rng.permutation(meta["patient_id"].unique())
    test_patients: set = set()
    have = dict.fromkeys(classes, 0)
    for patient in patients:  # patients into the test split until every class has its test images
        if min(have.values()) >= TEST_PER_CLASS:
            break
        rows = meta[meta["patient_id"] == patient]
        if any(have[c] < TEST_PER_CLASS for c in rows["class"]):
            test_patients.add(patient)
            for c in rows["class"]:
                have[c] += 1
    in_test = meta["patient_id"].isin(test_patients).to_numpy()
    keep, split = [], []
    for c in classes:
        test_rows = np.flatnonzero(in_test & (meta["class"] == c).to_numpy())
        train_rows = np.flatnonzero(~in_test & (meta["class"] == c).to_numpy())
        keep += list(rng.choice(test_rows, TEST_PER_CLASS, replace=False))
        split += ["test"] * TEST_PER_CLASS
        keep += list(rng.choice(train_rows, NIH_COUNTS[c], replace=False))
        split += ["train"] * NIH_COUNTS[c]
    order = np.argsort(keep)
    keep, split = np.asarray(keep)[order], np.asarray(split)[order]
    tmp = work / ".nih_cache.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "images.npy", np.asarray(cache.images[keep]))
    subset = meta.iloc[keep].assign(split=split)
    subset.to_csv(tmp / "meta.csv", index=False)
    info = dict(cache.info)
    info.update(prepared=int(len(keep)), fingerprint=f"nih-subset-{seed}",
                per_class={c: int((subset["class"] == c).sum()) for c in classes},
                splits={s: int((subset["split"] == s).sum()) for s in ("train", "val", "test")},
                note="bench/augment.py: NIH-proportioned train split, balanced test split by patient")
    (tmp / "cache.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    tmp.replace(out)
    assert not set(subset[subset.split == "train"].patient_id) & set(subset[subset.split == "test"].patient_id)
    del pd
    return out


class PhantomSource:
    """Stands in for a generator: fresh phantoms (never in the data) of the requested class ("oracle", the
    upper bound: as good as new real images), of a random class labelled as requested ("random_labels",
    the lower bound), or of the requested class only 60% of the time ("imperfect": a generator whose
    class adherence is 60%, like the default GAN's on hard findings). Drawn at PHANTOM_SIZE and shrunk
    like `prepare` does."""

    def __init__(self, run_dir: Path, classes: list[str], kind: str = "oracle", size: int = SIZE):
        self.run_dir, self.classes, self.kind, self.size = Path(run_dir), list(classes), kind, size
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def image(self, label: int, seed: int) -> np.ndarray:
        from core.data.images import letterbox
        from core.data.phantoms import render_phantom

        rng = np.random.default_rng([int(seed), 77])
        wrong = self.kind == "random_labels" or (self.kind == "imperfect" and rng.random() < 0.4)
        drawn = int(rng.integers(len(self.classes))) if wrong else int(label)
        image, _ = render_phantom((self.classes[drawn],), PHANTOM_SIZE, rng, "PA" if rng.random() < 0.6 else "AP")
        return letterbox(image, self.size)[0]

    def iter_batches(self, labels, seeds, truncation: float = 1.0):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            images = list(pool.map(self.image, labels, seeds))
        for start in range(0, len(images), 64):
            yield np.stack(images[start:start + 64])


def train_default_gan(work: Path, cache: Path, threads: int = 0):
    """The default sngan (TrainConfig defaults, 64 px) on the NIH-proportioned cache -> WORK/run."""
    from core.gan.config import TrainConfig
    from core.gan.trainer import train

    return train(TrainConfig(run=str(work / "run"), data=str(cache), threads=threads,
                             resume=(work / "run" / "config.json").is_file()))


def run_bench(work: Path, source, args, recipe: str, out: Path) -> dict:
    from cli.commands.evaluate import aligned
    from cli.terminal import ProgressBar
    from core.evaluation.augment_bench import AugmentBenchConfig, augment_bench, report_table
    from core.evaluation.real_data import open_real_data
    from core.jobs import Job

    config = AugmentBenchConfig(run=str(source.run_dir), data=str(work / "nih_cache"), seeds=args.seeds,
                                classifier_steps=args.classifier_steps, shares=args.shares,
                                pretrain=not args.no_pretrain, recipe=recipe, out=str(out))
    real = open_real_data(work / "nih_cache", source.classes, SIZE)
    report = augment_bench(config, Job(ProgressBar(out.name)), real=real, generator=source)
    print(f"\n== {out.name}: recipe {recipe}, {report['seconds']:.0f} s")
    print(aligned(*report_table(report)))
    print(report["verdict_text"])
    print(json.dumps(report["screening"][0]))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("data", "train", "bench", "bounds", "screening"))
    parser.add_argument("work")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--classifier-steps", type=int, default=800)
    parser.add_argument("--shares", type=lambda text: [float(x) for x in text.split(",") if x], default=[0.25, 0.5, 2.0])
    parser.add_argument("--no-pretrain", action="store_true")
    parser.add_argument("--recipes", default="none,recommended", help="bench: recipes to compare")
    parser.add_argument("--threads", type=int, default=0, help="train: TensorFlow threads")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cache = build_nih_cache(work)
    if args.step == "data":
        print(f"{cache} in {time.monotonic() - started:.0f} s:", json.loads((cache / "cache.json").read_text())["per_class"])
    elif args.step == "train":
        summary = train_default_gan(work, cache, args.threads)
        print(f"trained to step {summary.step} in {summary.seconds:.0f} s ({summary.images_per_s:.1f} images/s)")
    elif args.step == "bounds":
        from core.data.cache import PreparedCache

        classes = PreparedCache.open(cache).classes
        for kind in ("oracle", "random_labels"):
            run_bench(work, PhantomSource(work / kind, classes, kind), args, "none", work / kind / "evaluation")
    elif args.step == "screening":
        from core.data.cache import PreparedCache

        source = PhantomSource(work / "imperfect", PreparedCache.open(cache).classes, "imperfect")
        for recipe in args.recipes.split(","):
            run_bench(work, source, args, recipe, work / "imperfect" / f"bench_{recipe}")
    else:
        from core.export.generator import load_generator

        generator = load_generator(work / "run")
        for recipe in args.recipes.split(","):
            run_bench(work, generator, args, recipe, work / "run" / f"bench_{recipe}")
    print(f"total {time.monotonic() - started:.0f} s; load average {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
