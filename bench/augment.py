"""Does the synthetic top-up help on NIH-proportioned data? The augmentation bench with its bounds.

    python bench/augment.py data WORK            # demo-data --proportions nih (128 px) -> WORK/nih_cache (64 px)
    python bench/augment.py train WORK           # the default sngan, Standard preset (10 min) -> WORK/run
    python bench/augment.py bench WORK [--seeds 3] [--recipes none,recommended]   # that run's generator
    python bench/augment.py bounds WORK          # oracle (fresh real phantoms) and random-label generators
    python bench/augment.py screening WORK       # a 60%-adherence stand-in, plain vs the recommended recipe
    options: --difficulty easy|realistic|hard --data-seed N (data the project never saw), --test-per-class,
    --kinds, --shares

`data` writes the demo phantoms with NIH single-label proportions (No Finding 280 ... Mass 30 before the
train/val cut) and a balanced test split of `--test-per-class` (120) per class by patient, and prepares them
at 64 px. The test split is 3x the demo data's 40 because the arms are compared on it: with 40 per class,
the test sample alone moved one seed's paired gain by about +-0.03 (two classifiers that disagree on a third
of 280 images), as much as the gains being measured.

The bench prints one table per generator; `bounds` runs the same bench with an oracle generator (new
phantoms of the right class: the upper bound) and a random-label one (the lower bound), so the verdict
logic is seen to separate them; `screening` (kinds `imperfect` by default) shows what the recipe's
screening recovers from a generator that draws the wrong finding 40% of the time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

PHANTOM_SIZE = 128
SIZE = 64


def build_nih_cache(work: Path, seed: int = 0, difficulty: str = "realistic", test_per_class: int = 120) -> Path:
    """WORK/nih_cache: `demo-data --proportions nih` (No Finding 280 ... Mass 30, a balanced test split of
    `test_per_class` per class by patient, official split lists) at 128 px, prepared at 64 px."""
    from core.data.cache import PrepareConfig, prepare
    from core.data.phantoms import write_demo_dataset

    out = work / "nih_cache"
    if (out / "cache.json").is_file():
        return out
    root = write_demo_dataset(work / "phantoms", size=PHANTOM_SIZE, seed=seed, difficulty=difficulty,
                              proportions="nih", test_per_class=test_per_class)
    return Path(prepare(PrepareConfig(data=str(root), out=str(out), size=SIZE)).path)


class PhantomSource:
    """Stands in for a generator: fresh phantoms (never in the data) of the requested class ("oracle", the
    upper bound: as good as new real images), of a random class labelled as requested ("random_labels",
    the lower bound), or of the requested class only 60% of the time ("imperfect": a generator whose
    class adherence is 60%, like the default GAN's on hard findings). Drawn at PHANTOM_SIZE and shrunk
    like `prepare` does."""

    def __init__(self, run_dir: Path, classes: list[str], kind: str = "oracle", size: int = SIZE,
                 difficulty: str = "realistic"):
        self.run_dir, self.classes, self.kind, self.size = Path(run_dir), list(classes), kind, size
        self.difficulty = difficulty
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def image(self, label: int, seed: int) -> np.ndarray:
        from core.data.images import letterbox
        from core.data.phantoms import render_phantom

        rng = np.random.default_rng([int(seed), 77])  # apart from the data's seeds: never a data image
        wrong = self.kind == "random_labels" or (self.kind == "imperfect" and rng.random() < 0.4)
        drawn = int(rng.integers(len(self.classes))) if wrong else int(label)
        view = "PA" if rng.random() < 0.6 else "AP"
        image, _ = render_phantom((self.classes[drawn],), PHANTOM_SIZE, rng, view, self.difficulty)
        return letterbox(image, self.size)[0]

    def iter_batches(self, labels, seeds, truncation: float = 1.0):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            images = list(pool.map(self.image, labels, seeds))
        for start in range(0, len(images), 64):
            yield np.stack(images[start:start + 64])


def train_default_gan(work: Path, cache: Path, threads: int = 0, preset: str = "Standard"):
    """The default sngan with a training preset (as a user picks it in the Train tab: the Standard preset is
    10 minutes at 64 px) on the NIH-proportioned cache -> WORK/run."""
    from core.gan.config import TrainConfig
    from core.gan.presets import apply_preset, preset_named
    from core.gan.trainer import train

    config = TrainConfig(run=str(work / "run"), data=str(cache), threads=threads,
                         resume=(work / "run" / "config.json").is_file())
    return train(apply_preset(config, preset_named(preset)))


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
    parser.add_argument("--shares", type=lambda text: [float(x) for x in text.split(",") if x], default=[0.25, 0.5])
    parser.add_argument("--no-pretrain", action="store_true")
    parser.add_argument("--recipes", default="none,recommended", help="bench: recipes to compare")
    parser.add_argument("--threads", type=int, default=0, help="train: TensorFlow threads")
    parser.add_argument("--preset", default="Standard", help="train: the training preset (time budget)")
    parser.add_argument("--difficulty", default="realistic", help="data: phantom difficulty (easy, realistic, hard)")
    parser.add_argument("--data-seed", type=int, default=0, help="data: seed of the phantom set")
    parser.add_argument("--test-per-class", type=int, default=120, help="data: test images per class")
    parser.add_argument("--kinds", default="", help="bounds/screening: stand-in generators to bench")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cache = build_nih_cache(work, args.data_seed, args.difficulty, args.test_per_class)
    if args.step == "data":
        print(f"{cache} in {time.monotonic() - started:.0f} s:", json.loads((cache / "cache.json").read_text())["per_class"])
    elif args.step == "train":
        summary = train_default_gan(work, cache, args.threads, args.preset)
        print(f"trained to step {summary.step} in {summary.seconds:.0f} s ({summary.images_per_s:.1f} images/s)")
    elif args.step in ("bounds", "screening"):
        from core.data.cache import PreparedCache

        classes = PreparedCache.open(cache).classes
        kinds = args.kinds or ("oracle,random_labels" if args.step == "bounds" else "imperfect")
        for kind in kinds.split(","):
            source = PhantomSource(work / kind, classes, kind, difficulty=args.difficulty)
            for recipe in args.recipes.split(","):
                run_bench(work, source, args, recipe, work / kind / f"bench_{recipe}")
    else:
        from core.export.generator import load_generator

        generator = load_generator(work / "run")
        for recipe in args.recipes.split(","):
            run_bench(work, generator, args, recipe, work / "run" / f"bench_{recipe}")
    print(f"total {time.monotonic() - started:.0f} s; load average {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
