"""Class adherence of the GAN, judged on held-out realistic phantoms, against wall-clock minutes of training.

    .venv/bin/python bench/quality.py [--minutes 10] [--eval-every 1] [--size 64] [--difficulty realistic]
        [--per-class 120 | --proportions nih] [--data-seed 0] [--judge-per-class 300] [--judge-steps 4000]
        [--set FIELD=VALUE]

1. writes the GAN's training data: a phantom demo dataset (seed `--data-seed`, default 0) of `--difficulty`,
   prepared at `--size`;
2. trains the judge (`core.evaluation.classifier`, the project's evaluator) on other phantoms of the same
   kind (seed + 1) that the GAN never sees, and prints its per-class accuracy on further held-out phantoms
   (seed + 2): the judge's own ceiling (on realistic phantoms at 64 px about 86%, every class >= 72%, after
   4000 steps; at 2000 steps it has not converged, about 61%);
3. trains the GAN through the project's training API in chunks of `--eval-every` minutes (each chunk resumes
   the run, which is exact) until `--minutes` of training time; after each chunk the judge classifies
   `--samples` generated images per class; adherence = the share it puts in their conditioned class (chance 1/7).

Prints one row per chunk (training minutes, steps, images/s, overall and per-class adherence, so a failing class
shows) and, at the end, the within-class MS-SSIM of generated and of real images (diversity); writes
`adherence_RUN.png` (adherence against training minutes, one line per class) and `quality_RUN.json`
into the work folder (RUN = `--run-name`), and ends with a JSON line and a verdict against issue 9's target
at 64 px: overall >= 90% and every class >= 75% within 10 minutes of training. Timings depend on the
machine's load: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.phantom_judge import load_average, per_class_accuracy, phantom_images  # noqa: E402
from core.jobs import Job  # noqa: E402

TARGET_OVERALL, TARGET_CLASS = 0.90, 0.75


def train_for(run: Path, cache: Path, size: int, classes: list[str], seconds: float, overrides: dict,
              until_step: int = 0):
    """Train (or resume) the run for about `seconds` of training through the project's task API (`run_train`);
    the one place that knows that API. Returns (summary, training seconds, GAN steps). The clock runs from the first
    "training" report (after the first step, which builds and compiles the step function again in every resumed
    chunk) to the last, plus the first step's share, so the rebuilds are not counted; TrainConfig's own time
    budget would count them, so the chunk ends by a stop request instead. With `until_step` the chunk ends at
    that step instead (comparisons at equal steps, which a loaded machine does not distort)."""
    from core.gan.config import TrainConfig
    from core.jobs import Cancelled
    from core.tasks import run_train

    clock: list[float] = []
    gan_steps = [0]

    def on_progress(progress):
        if progress.stage in ("guide", "training"):   # the class guide's warm-up is training time
            clock.append(time.monotonic())
            gan_steps[0] += progress.stage == "training"
            if len(clock) == 1:
                timer.start()

    job = Job(on_progress, min_interval=0.0)
    timer = threading.Timer(seconds if not until_step else 10 ** 6, job.request_stop)
    config = TrainConfig(run=str(run), data=str(cache), size=size, classes=list(classes),
                         steps=until_step or 10_000_000,
                         log_every=50, sample_every=500, checkpoint_every=10_000_000,
                         resume=(run / "config.json").exists(), **overrides)
    try:
        summary = run_train(config, job)
    except Cancelled as stopped:  # the chunk's stop request: checkpoint and generator are saved
        if stopped.result is None:
            raise
        summary = stopped.result
    finally:
        timer.cancel()
    reports = len(clock)  # one report per step (guide warm-up steps included)
    trained = (clock[-1] - clock[0]) * reports / max(reports - 1, 1) if reports else 0.0
    return summary, trained, gan_steps[0]


def adherence(run: Path, judge, n_classes: int, per_class: int) -> list[float]:
    """Share of generated images per class that the judge puts in their conditioned class."""
    from core.export.generator import load_generator

    generator = load_generator(run)
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), per_class)
    images = generator.generate(labels, list(range(10_000, 10_000 + len(labels))))
    probs, _ = judge(images)
    return per_class_accuracy(probs, labels, n_classes)


def diversity(run: Path, cache, n_classes: int, per_class: int = 60) -> tuple[float, float]:
    """Mean within-class pairwise MS-SSIM of generated images and of the real training images (issue 9's
    target: generated at most real + 0.05; higher means the generator repeats itself)."""
    from core.evaluation.measures import mean_pairwise_ms_ssim
    from core.export.generator import load_generator

    generator = load_generator(run)
    train = cache.split == "train"
    generated, real = [], []
    for c in range(n_classes):
        seeds = list(range(20_000 + 1000 * c, 20_000 + 1000 * c + per_class))
        images = generator.generate(np.full(per_class, c, np.int32), seeds)
        generated.append(mean_pairwise_ms_ssim(images, 200, 0))
        real.append(mean_pairwise_ms_ssim(np.asarray(cache.images[train & (cache.labels == c)]), 200, 0))
    return float(np.mean(generated)), float(np.mean(real))


def cached_judge(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], steps: int):
    """The judge trained on these phantoms, loaded from `folder` when an earlier run trained the same one."""
    from core.evaluation.classifier import ClassifierConfig, Embedder, cached_classifier

    model, _ = cached_classifier(folder, images, labels, classes, ClassifierConfig(steps=steps, seed=0))
    return Embedder(model)


def parse_overrides(items: list[str]) -> dict:
    from core.gan.config import TrainConfig

    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        default = getattr(TrainConfig, name, None)
        if default is None:
            raise SystemExit(f"--set: TrainConfig has no field {name!r}")
        overrides[name] = (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(value)
    return overrides


def plot(rows: list[dict], classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["minutes"] for row in rows]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for k, name in enumerate(classes):
        axes.plot(minutes, [row["per_class"][k] for row in rows], marker=".", linewidth=1, label=name)
    axes.plot(minutes, [row["overall"] for row in rows], color="black", linewidth=2.5, label="overall")
    axes.axhline(TARGET_OVERALL, color="black", linestyle=":", linewidth=1)
    axes.axhline(1 / len(classes), color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set(xlabel="training minutes (wall clock)", ylabel="adherence (judge on held-out phantoms)", ylim=(0, 1.02))
    axes.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget (wall clock, default 10)")
    parser.add_argument("--eval-every", type=float, default=1.0, help="minutes of training between evaluations")
    parser.add_argument("--steps", type=int, default=0, help="train to this step instead of for --minutes (compare "
                                                             "settings at equal steps on a busy machine)")
    parser.add_argument("--eval-steps", type=int, default=100, help="with --steps: steps between evaluations")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--difficulty", default="realistic", help="phantoms for the GAN and the judge")
    parser.add_argument("--per-class", type=int, default=120, help="GAN training phantoms per class")
    parser.add_argument("--data-seed", type=int, default=0, help="phantom seeds: the GAN's data uses this one, the "
                                                                "judge's training and held-out phantoms the next two "
                                                                "(another value = data none of the settings were "
                                                                "tuned on)")
    parser.add_argument("--proportions", default=None, help="'nih': GAN training data in NIH proportions instead")
    parser.add_argument("--judge-per-class", type=int, default=300, help="judge training phantoms per class")
    parser.add_argument("--judge-steps", type=int, default=4000, help="judge training steps (batch 64)")
    parser.add_argument("--samples", type=int, default=50, help="generated images per class for each evaluation")
    parser.add_argument("--work", default="", help="work folder (default: a temporary one); an existing run in "
                                                   "it is resumed")
    parser.add_argument("--judge-cache", default="", help="folder that keeps the trained judge (default: the work "
                                                          "folder), so runs that compare GAN settings share one")
    parser.add_argument("--run-name", default="run", help="the GAN run's folder inside the work folder")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field, e.g. --set precision=mixed_bfloat16")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    from core.gan.config import TrainConfig

    batch = overrides.get("batch", TrainConfig.batch)

    from core.data.cache import CacheError, PrepareConfig, PreparedCache, prepare
    from core.data.phantoms import write_demo_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="gan_quality_"))
    print(f"work folder {work}; load average {load_average()}", flush=True)
    t = time.monotonic()
    cache_dir = work / f"cache{args.size}"
    try:   # a work folder reused for another GAN setting keeps its data
        PreparedCache.open(cache_dir)
    except CacheError:
        root = write_demo_dataset(work / "nih", per_class=args.per_class, size=max(128, 2 * args.size),
                                  seed=args.data_seed,
                                  difficulty=args.difficulty, proportions=args.proportions)
        prepare(PrepareConfig(data=str(root), out=str(cache_dir), size=args.size))
    cache = PreparedCache.open(cache_dir)
    classes = list(cache.classes)
    counts = np.bincount(cache.labels[cache.split == "train"], minlength=len(classes))
    print(f"GAN data: {int(counts.sum())} training images ({', '.join(f'{c} {n}' for c, n in zip(classes, counts))}), "
          f"{args.difficulty} phantoms, ready in {time.monotonic() - t:.0f} s", flush=True)

    t = time.monotonic()
    judge_x, judge_y = phantom_images(args.difficulty, args.size, args.judge_per_class, seed=args.data_seed + 1,
                                       classes=classes)
    held_x, held_y = phantom_images(args.difficulty, args.size, 100, seed=args.data_seed + 2, classes=classes)
    judge = cached_judge(Path(args.judge_cache) if args.judge_cache else work, judge_x, judge_y, classes,
                         args.judge_steps)
    ceiling = per_class_accuracy(judge(held_x)[0], held_y, len(classes))
    print(f"judge: {args.judge_per_class} phantoms per class the GAN never sees, {args.judge_steps} steps, "
          f"{time.monotonic() - t:.0f} s; accuracy on held-out phantoms {np.mean(ceiling):.1%} "
          f"({' '.join(f'{a:.0%}' for a in ceiling)})", flush=True)

    run = work / args.run_name
    rows: list[dict] = []
    trained_s, wall0 = 0.0, time.monotonic()
    print(f"{'minutes':>7} {'step':>6} {'img/s':>6} {'overall':>7}  " + " ".join(f"{c[:11]:>11}" for c in classes)
          + "   load", flush=True)
    step = 0
    while (step < args.steps) if args.steps else (trained_s < args.minutes * 60 - 1):
        chunk = min(args.eval_every * 60, args.minutes * 60 - trained_s)
        until = min(args.steps, step + args.eval_steps) if args.steps else 0
        summary, seconds, steps = train_for(run, cache_dir, args.size, classes, chunk, overrides, until)
        step = summary.step
        trained_s += seconds
        speed = batch * steps / seconds if seconds > 0 else 0.0
        per_class = adherence(run, judge, len(classes), args.samples)
        rows.append({"minutes": round(trained_s / 60, 2), "step": summary.step,
                     "images_per_s": round(speed, 1), "overall": float(np.mean(per_class)),
                     "per_class": per_class, "load": load_average()})
        print(f"{trained_s / 60:>7.1f} {summary.step:>6} {speed:>6.0f} {np.mean(per_class):>7.1%}  "
              + " ".join(f"{a:>11.0%}" for a in per_class) + f"   {load_average()}", flush=True)
        if steps == 0:
            break
    plot(rows, classes, work / f"adherence_{args.run_name}.png")
    ms_generated, ms_real = diversity(run, cache, len(classes))
    print(f"within-class MS-SSIM: generated {ms_generated:.3f}, real {ms_real:.3f} (target: at most real + 0.05)",
          flush=True)
    last = rows[-1]
    passed = last["overall"] >= TARGET_OVERALL and min(last["per_class"]) >= TARGET_CLASS
    result = {"adherence": round(last["overall"], 4),
              "per_class": {c: round(a, 3) for c, a in zip(classes, last["per_class"])},
              "steps": last["step"], "train_minutes": last["minutes"],
              "wall_minutes": round((time.monotonic() - wall0) / 60, 1), "size": args.size,
              "difficulty": args.difficulty, "data_seed": args.data_seed, "ms_ssim_generated": round(ms_generated, 4),
              "ms_ssim_real": round(ms_real, 4), "judge_ceiling": round(float(np.mean(ceiling)), 4),
              "judge_ceiling_per_class": {c: round(a, 3) for c, a in zip(classes, ceiling)},
              "target": f"overall >= {TARGET_OVERALL:.0%}, every class >= {TARGET_CLASS:.0%} within "
                        f"{args.minutes:g} min", "verdict": "PASS" if passed else "FAIL", "overrides": overrides,
              "load": load_average(), "curve": rows, "run": str(run),
              "plot": str(work / f"adherence_{args.run_name}.png")}
    (work / f"quality_{args.run_name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
