"""Class adherence of the sngan on phantom data at 64 px, within a CPU time budget.

    .venv/bin/python bench/quality.py [--minutes 20] [--steps 3000] [--eval-every 500] [--per-class 120]

1. writes the phantom demo dataset and prepares a 64 px cache (all seven default classes);
2. trains a small judge classifier on the REAL training images (core.evaluation.classifier: GroupNorm, so its
   inference mode is honest) and reports its accuracy on the real val/test images;
3. trains the sngan in chunks of `--eval-every` steps (each chunk resumes the run, which is exact),
   and after each chunk the judge classifies 50 generated images per class from generator.keras;
   adherence = share of generated images the judge assigns to their conditioned class (chance 1/7).
Stops at --steps or when the training time exceeds --minutes. Prints one table row per chunk; the
verdict uses the last evaluation made within the budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def adherence(run: Path, judge, n_classes: int, per_class: int = 50) -> tuple[float, list[float]]:
    from core.export.generator import latent_batch, load_generator, to_uint8

    generator = load_generator(run)
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), per_class)
    z = latent_batch(list(range(10_000, 10_000 + len(labels))), generator.latent_dim)
    images = to_uint8(generator.model.predict([z, labels], batch_size=128, verbose=0))
    probs, _ = judge(images)
    hits = probs.argmax(axis=1) == labels
    return float(hits.mean()), [float(hits[labels == k].mean()) for k in range(n_classes)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget (wall clock)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=120, help="phantom images per class")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--work", default="", help="work folder (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field, e.g. --set ac_weight=0.5")
    args = parser.parse_args()

    from core.data.cache import PrepareConfig, PreparedCache, prepare
    from core.evaluation.classifier import ClassifierConfig, Embedder, train_classifier
    from core.gan.config import TrainConfig
    from core.gan.trainer import train
    from core.data.phantoms import write_demo_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="gan_quality_"))
    t = time.monotonic()
    root = write_demo_dataset(work / "nih", per_class=args.per_class, size=256, seed=0)
    prepare(PrepareConfig(data=str(root), out=str(work / "cache64"), size=64))
    cache = PreparedCache.open(work / "cache64")
    train_rows = cache.split == "train"
    print(f"data: {int(train_rows.sum())} train / {int((~train_rows).sum())} held-out real images, "
          f"{len(cache.classes)} classes, ready in {time.monotonic() - t:.0f} s", flush=True)

    t = time.monotonic()
    model = train_classifier(np.asarray(cache.images[train_rows]), cache.labels[train_rows], len(cache.classes),
                             ClassifierConfig(steps=1000))
    judge = Embedder(model)
    probs, _ = judge(np.asarray(cache.images[~train_rows]))
    real_acc = float((probs.argmax(axis=1) == cache.labels[~train_rows]).mean())
    print(f"judge: accuracy on held-out REAL images {real_acc:.1%} (inference mode), "
          f"trained in {time.monotonic() - t:.0f} s", flush=True)

    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        overrides[name] = type(getattr(TrainConfig, name, value))(value) if hasattr(TrainConfig, name) else value
    run = work / "run"
    budget = args.minutes * 60
    trained_s, cpu0, step, within = 0.0, time.process_time(), 0, None
    print(f"{'step':>6} {'train_s':>8} {'img/s':>7} {'adherence':>9}  per class ({', '.join(cache.classes)})")
    while step < args.steps and trained_s < budget:
        step = min(args.steps, step + args.eval_every)
        config = TrainConfig(run=str(run), data=str(work / "cache64"), size=64, batch=args.batch, steps=step,
                             resume=run.joinpath("config.json").exists(), log_every=50,
                             sample_every=args.eval_every, checkpoint_every=args.eval_every, **overrides)
        summary = train(config)
        trained_s += summary.seconds
        score, per_class = adherence(run, judge, len(cache.classes))
        if trained_s <= budget:
            within = (step, trained_s, score)
        print(f"{step:>6} {trained_s:>8.0f} {summary.images_per_s:>7.1f} {score:>9.1%}  "
              + " ".join(f"{p:.0%}" for p in per_class), flush=True)
    cpu_min = (time.process_time() - cpu0) / 60
    step, trained_s, score = within or (step, trained_s, score)
    verdict = "PASS" if within and score >= 0.8 else "FAIL"
    print(json.dumps({"adherence": round(score, 4), "steps": step, "train_minutes": round(trained_s / 60, 1),
                      "process_cpu_minutes": round(cpu_min, 1), "judge_real_accuracy": round(real_acc, 4),
                      "target": ">= 80% within 20 min", "verdict": verdict, "run": str(run)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
