"""Do the synthetic images help a classifier more than repeating real images? A paired experiment.

Every arm trains the same small classifier (`core.evaluation.classifier`, light augmentation) for the
same number of updates, with natural-frequency sampling (images uniformly: what plain training does),
once per seed with that seed, and is scored on the held-out real test split (split by patient):

- `real`: the real training images as they are (what a user gets without the tool);
- `duplicate_control`: real + copies of real images of the minority classes, topping every class up
  to the largest class's count (count-matched to what the synthetic arm adds): the bar to beat;
- `synthetic`: real + synthetic images topping the minority classes up to the same counts;
- `synthetic_x<s>` (share sweep): s times the top-up as synthetic images; below 1 the rest of the top-up
  is repeated real images, so every arm up to x1 has the control's class balance and differs from it
  only in where the extra images come from; above 1 the minority classes get more than the largest;
- `pretrain`: half the updates on a class-balanced synthetic set of all classes, then the other half on
  the control's images (real + repeats), continuing with the same weights and optimiser.

In every arm a class gets only as many synthetic images as passed the recipe's screen (the judge read them
as their class and they are no near-copies); the rest of its top-up is repeated real images
(`screened_arm`), so a class the generator cannot draw falls back to the control's remedy.

Scores per arm and seed: balanced accuracy (mean per-class recall), macro one-vs-rest AUC, per-class
recall and AUC, and the mean recall of the three rarest classes. Each arm's gain over the control is a
paired difference per seed; its mean and standard error decide the verdict (`core.evaluation.verdict`).
The synthetic images are drawn with a `Recipe` (truncation, screening by the judge and by novelty),
the same way `generate --recipe` exports them. Writes `augment_bench.json`, plots and `report.html`
to RUN/evaluation, holding its lock as `evaluate` does (`holding_evaluation_folder`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.evaluation.classifier import ClassifierConfig, Embedder, accuracy_per_class, auc_one_vs_rest, \
    cached_classifier, train_classifier
from core.evaluation.evaluate import holding_evaluation_folder
from core.evaluation.real_data import MIN_TEST_PER_CLASS, RealData, open_real_data
from core.evaluation.recipe import RECIPE_CHOICES, Screen, draw, recipe_named
from core.evaluation.tensorboard import bench_scalars, log_to_board
from core.evaluation.verdict import BENCH_FILE, verdict_for, verdict_text
from core.jobs import Job
from core.options import option

REPORT_NAME = BENCH_FILE
CONTROL = "duplicate_control"
RARE_CLASSES = 3


@dataclass
class AugmentBenchConfig:
    run: str = option("", "Run folder holding generator.keras and config.json.")
    data: str = option("", "Real images: a prepared cache or an NIH dataset folder; empty = the run's training "
                           "cache. Its test split (by patient) scores every arm.")
    seeds: int = option(3, "Classifier seeds. Every arm trains once per seed with that seed, so the gains are "
                           "paired differences; at least 2 for a verdict.")
    classifier_steps: int = option(800, "Updates of every classifier, the same in every arm (batch 64).")
    shares: list = option([0.25, 0.5], "Synthetic share sweep: extra arms adding this many times the top-up as "
                                       "synthetic images (the rest of the top-up as repeats). 2 lost 0.11-0.15 "
                                       "balanced accuracy to the control whenever it was measured.")
    pretrain: bool = option(True, "Also train the pretrain arm: balanced synthetic images first, then real + "
                                  "repeats.")
    recipe: str = option("recommended", "How the synthetic images are drawn, as generate --recipe does "
                                        "('none' = plain samples).", choices=RECIPE_CHOICES)
    out: str = option("", "Folder for augment_bench.json, its plots and report.html; empty = RUN/evaluation.")

    def checked(self) -> "AugmentBenchConfig":
        """A copy with the shares as floats; UserError naming the option for values that cannot work."""
        if not self.run:
            raise UserError("augment-bench: --run (the run folder) is required")
        if self.seeds < 1 or self.classifier_steps < 2:
            raise UserError("augment-bench: --seeds must be at least 1 and --classifier-steps at least 2")
        try:
            shares = sorted({float(s) for s in self.shares})
        except (TypeError, ValueError):
            raise UserError(f"augment-bench: --shares must be numbers, not {self.shares!r}") from None
        if any(s <= 0 or s > 10 for s in shares):
            raise UserError("augment-bench: --shares must be between 0 and 10 (exclusive of 0)")
        recipe_named(self.recipe)
        return replace(self, shares=[s for s in shares if s != 1.0])


@dataclass
class Arm:
    """One way to build the training set: how many synthetic and repeated images per class."""

    name: str
    description: str
    synthetic: dict[int, int]
    duplicates: dict[int, int]
    pretrain: bool = False


def top_up(train_counts: np.ndarray) -> np.ndarray:
    """Images to add per class so every class has as many as the largest."""
    return train_counts.max() - train_counts


def rarest(classes: list[str], train_counts: np.ndarray, n: int = RARE_CLASSES) -> list[str]:
    """The `n` classes with the fewest training images (ties by name)."""
    order = sorted(range(len(classes)), key=lambda i: (train_counts[i], classes[i]))
    return [classes[i] for i in order[:n]]


def plan_arms(train_counts: np.ndarray, shares: list[float], pretrain: bool) -> list[Arm]:
    k = len(train_counts)
    fill = top_up(train_counts)
    arms = [Arm("real", "real training images only, natural class frequencies", {}, {}),
            Arm(CONTROL, "real + repeated real minority images up to the largest class", {},
                {c: int(fill[c]) for c in range(k)}),
            Arm("synthetic", "real + synthetic minority images up to the largest class",
                {c: int(fill[c]) for c in range(k)}, {})]
    for share in shares:
        synthetic = {c: int(round(share * fill[c])) for c in range(k)}
        duplicates = {c: max(0, int(fill[c]) - synthetic[c]) for c in range(k)}
        arms.append(Arm(f"synthetic_x{share:g}", f"real + {share:g} x the top-up as synthetic images"
                        + (", the rest as repeats" if share < 1 else ""), synthetic, duplicates))
    if pretrain:
        arms.append(Arm("pretrain", "balanced synthetic images of every class first, then real + repeats",
                        {c: int(train_counts.max()) for c in range(k)}, {c: int(fill[c]) for c in range(k)},
                        pretrain=True))
    return arms


def screened_arm(arm: Arm, passed: dict[int, int]) -> Arm:
    """The arm as trained: synthetic images of a class only as many as passed the recipe's screen, the rest
    of its top-up as repeated real images (so the arm stays count-matched to the control). An image the
    judge does not read as its class teaches the classifier a wrong finding: on the NIH-proportioned bench
    5 of 2,304 generated Nodule candidates passed, and topping Nodule up with the best of the others cut
    its recall from 0.14 (control) to 0.02. The pretrain arm pre-trains on fewer images of such a class."""
    synthetic = {c: min(n, passed.get(c, 0)) for c, n in arm.synthetic.items()}
    if synthetic == arm.synthetic:
        return arm
    if arm.pretrain:
        return replace(arm, synthetic=synthetic)
    duplicates = {c: arm.duplicates.get(c, 0) + n - synthetic[c] for c, n in arm.synthetic.items()}
    return replace(arm, synthetic=synthetic, duplicates={**arm.duplicates, **duplicates})


def repeats(labels: np.ndarray, counts: dict[int, int], seed: int) -> np.ndarray:
    """Indices of real images to repeat: `counts[c]` of class c, cycling through a shuffled class so
    each image is repeated as evenly as possible."""
    chosen = []
    for c, n in counts.items():
        members = np.flatnonzero(labels == c)
        if n <= 0 or members.size == 0:
            continue
        order = np.random.default_rng([seed, 5, c]).permutation(members)
        chosen.append(np.resize(order, n))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def scores(probs: np.ndarray, labels: np.ndarray, n_classes: int, rare: list[int]) -> dict:
    """Per-class recall and one-vs-rest AUC; balanced accuracy, macro AUC and the rare classes' recall."""
    recall = accuracy_per_class(probs, labels, n_classes)
    auc = auc_one_vs_rest(probs, labels, n_classes)
    return {"recall": recall, "auc": auc,
            "balanced_accuracy": float(np.mean([r for r in recall if r is not None])),
            "macro_auc": float(np.mean([a for a in auc if a is not None])),
            "rare_recall": float(np.mean([recall[c] for c in rare if recall[c] is not None]))}


HEADLINES = ("balanced_accuracy", "macro_auc", "rare_recall")


def _stat(values: list[float]) -> dict:
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "per_seed": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": round(float(np.mean(values)), 4), "std": None if std is None else round(std, 4),
            "per_seed": [round(v, 4) for v in values]}


def paired_gain(arm: list[dict], base: list[dict], key: str) -> dict:
    """Mean of the per-seed differences arm - base, their standard error (None with one seed)."""
    differences = [a[key] - b[key] for a, b in zip(arm, base)]
    n = len(differences)
    se = float(np.std(differences, ddof=1) / math.sqrt(n)) if n > 1 else None
    return {"mean": round(float(np.mean(differences)), 4), "se": None if se is None else round(se, 4),
            "per_seed": [round(float(d), 4) for d in differences]}


def _mean_counts(arms: list[Arm], field: str, classes: list[str]) -> dict[str, int]:
    """Per class, the mean over seeds of the arms' `field` counts (the images an arm used differ by seed
    when the screen passes a different number)."""
    total = {c: sum(getattr(arm, field).get(c, 0) for arm in arms) for c in range(len(classes))}
    return {classes[c]: int(round(n / len(arms))) for c, n in total.items() if n}


def summarise(runs: dict[str, list[dict]], arms: list[Arm], classes: list[str],
              used: dict[str, list[Arm]] | None = None) -> dict:
    """Per arm: what it added (the images it used, mean over seeds, beside what it planned), its headline
    scores with their spread, per-class scores, and its paired gains over the control and over real."""
    section = {}
    for arm in arms:
        seeds = runs[arm.name]
        trained = (used or {}).get(arm.name) or [arm]
        entry = {"description": arm.description, "pretrain": arm.pretrain,
                 "synthetic": _mean_counts(trained, "synthetic", classes),
                 "duplicates": _mean_counts(trained, "duplicates", classes),
                 "synthetic_planned": {classes[c]: n for c, n in arm.synthetic.items() if n}}
        entry.update({key: _stat([s[key] for s in seeds]) for key in HEADLINES})
        entry["per_class"] = {name: {"recall": _stat([s["recall"][i] for s in seeds]),
                                     "auc": _stat([s["auc"][i] for s in seeds])} for i, name in enumerate(classes)}
        entry["gain_vs_control"] = {key: paired_gain(seeds, runs[CONTROL], key) for key in HEADLINES}
        entry["gain_vs_real"] = {key: paired_gain(seeds, runs["real"], key) for key in HEADLINES}
        section[arm.name] = entry
    return section


def recommendation(arms: dict, verdict: dict, classes: list[str]) -> dict:
    """What to do with the images, from the best arm: the counts to generate and how to train with them.
    Unless the verdict is "helps", the advice is to balance by repeating real images instead."""
    best = verdict["best_arm"]
    entry = arms[best]
    if best == "pretrain":
        use = ("pre-train your classifier on a class-balanced synthetic set, then fine-tune it on your real "
               "images with the minority classes repeated up to the largest class")
    else:
        use = (f"add them to your real training set ({entry['description'].removeprefix('real + ')}) and "
               "train with plain, natural-frequency sampling")
    if verdict["verdict"] == "helps":
        advice = use[0].upper() + use[1:] + "."
    else:
        advice = ("Synthetic images did not beat repeating your real minority images: balance the classes by "
                  "repeating them (or class-balanced sampling) instead. If you use synthetic images anyway, the "
                  f"least harmful way measured was to {use}.")
    return {"arm": best, "counts": {c: entry["synthetic"].get(c, 0) for c in classes},
            "pretrain": entry["pretrain"], "advice": advice}


def augment_bench(config: AugmentBenchConfig, job: Job | None = None, real: RealData | None = None,
                  generator=None) -> dict:
    """Run every arm over every seed, write augment_bench.json, plots and report.html; return the report.

    `generator` may be any image source with `classes`, `size`, `run_dir` and
    `iter_batches(labels, seeds, truncation)` (the bench's oracle and random-label sources are)."""
    job = job or Job()
    config = config.checked()
    with holding_evaluation_folder(generator.run_dir if generator else config.run, config.out, job):
        return _bench_holding(config, job, real, generator)


def _bench_holding(config: AugmentBenchConfig, job: Job, real: RealData | None, generator) -> dict:
    from core.export.generator import load_generator, real_cache

    started = time.monotonic()
    recipe = recipe_named(config.recipe)
    generator = generator or load_generator(config.run)
    if real is None:
        real = open_real_data(real_cache(generator, config.data, job), generator.classes, generator.size)
    real.require_training_and_test(MIN_TEST_PER_CLASS)
    classes, k = list(generator.classes), len(generator.classes)
    train_x, train_y = real.part("train")
    test_x, test_y = real.held_out()
    counts = np.bincount(train_y, minlength=k)
    rare_names = rarest(classes, counts)
    rare = [classes.index(c) for c in rare_names]
    arms = plan_arms(counts, config.shares, config.pretrain)
    pool = {c: max(max(arm.synthetic.get(c, 0) for arm in arms), 0) for c in range(k)}
    steps = config.classifier_steps
    judge_steps = ClassifierConfig().steps if recipe.screens else 0
    total = judge_steps + config.seeds * (sum(pool.values()) + len(arms) * steps)
    done = 0
    screen = None
    if recipe.screens:
        judge, _ = cached_classifier(Path(generator.run_dir) / "evaluation", train_x, train_y, classes,
                                     ClassifierConfig(), job, (0, total))
        screen = Screen(Embedder(judge), train_x, test_x)
        done = judge_steps
    runs: dict[str, list[dict]] = {arm.name: [] for arm in arms}
    used: dict[str, list[Arm]] = {arm.name: [] for arm in arms}
    screening = []
    for seed in range(config.seeds):
        drawn = draw(generator, pool, 1000 + seed, recipe, screen, job, (done, total), classes)
        done += sum(pool.values())
        screening.append(drawn.stats)
        passed = {classes.index(name): stat["passed"] for name, stat in drawn.stats.items()}
        for planned in arms:
            job.check()
            arm = screened_arm(planned, passed)
            used[arm.name].append(arm)
            classifier = ClassifierConfig(steps=steps, seed=seed, sampling="natural")
            take = [np.flatnonzero(drawn.labels == c)[:n] for c, n in arm.synthetic.items() if n]
            syn = np.concatenate(take) if take else np.zeros(0, np.int64)
            dup = repeats(train_y, arm.duplicates, seed)
            base_x = np.concatenate([train_x, train_x[dup]])
            base_y = np.concatenate([train_y, train_y[dup]])
            if arm.pretrain:
                first = replace(classifier, steps=steps // 2)
                model = train_classifier(drawn.images[syn], drawn.labels[syn], k, first, job, (done, total))
                model = train_classifier(base_x, base_y, k, replace(classifier, steps=steps - steps // 2), job,
                                         (done + steps // 2, total), model=model)
            else:
                x = np.concatenate([base_x, drawn.images[syn]]) if syn.size else base_x
                y = np.concatenate([base_y, drawn.labels[syn]]) if syn.size else base_y
                model = train_classifier(x, y, k, classifier, job, (done, total))
            done += steps
            runs[arm.name].append(scores(Embedder(model)(test_x)[0], test_y, k, rare))
            job.report(done, total, f"seed {seed + 1}/{config.seeds}: {arm.name}")
    summary = summarise(runs, arms, classes, used)
    candidates = {name: entry["gain_vs_control"] for name, entry in summary.items() if name not in ("real", CONTROL)}
    verdict = verdict_for(candidates, config.seeds)
    report = {
        "run": str(generator.run_dir), "data": real.source, "classes": classes,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**asdict(config), "shares": [1.0] + config.shares},
        "recipe": recipe.to_json(), "screening": screening,
        "train_counts": {c: int(n) for c, n in zip(classes, counts)},
        "test_counts": {c: int((test_y == i).sum()) for i, c in enumerate(classes)},
        "real_train_images": int(len(train_y)), "test_images": int(len(test_y)),
        "rarest_classes": rare_names, "control": CONTROL,
        "arms": summary, "verdict": verdict, "verdict_text": verdict_text(verdict),
        "recommended": recommendation(summary, verdict, classes),
        "seconds": round(time.monotonic() - started, 1),
    }
    out = Path(config.out) if config.out else Path(generator.run_dir) / "evaluation"
    write_bench_outputs(out, report)
    log_to_board(generator.run_dir, bench_scalars(report), {"augment_bench_verdict": report["verdict_text"]}, job)
    job.report(total, total, "done")
    return report


def write_bench_outputs(out: Path, report: dict) -> None:
    """Plots, augment_bench.json and the run's report.html (each written whole or not at all)."""
    from core.atomic import atomic_write_text
    from core.evaluation.plots import bench_figures, save_figures
    from core.evaluation.report import write_report

    import json

    report["plots"] = save_figures(out, bench_figures(report))
    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2) + "\n")
    write_report(out, run_dir=report["run"])


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.3f}" + (f" +- {stat['std']:.3f}" if stat["std"] is not None else "")


def report_table(report: dict) -> tuple[list[str], list[list]]:
    """Per class recall, then balanced accuracy, macro AUC and the gain over the control, per arm
    ('mean +- std over seeds'): for the CLI and the GUI."""
    arms = report["arms"]
    header = ["class"] + list(arms)
    rows = [[c] + [_cell(arms[a]["per_class"][c]["recall"]) for a in arms] for c in report["classes"]]
    rows.append(["balanced accuracy"] + [_cell(arms[a]["balanced_accuracy"]) for a in arms])
    rows.append(["macro AUC"] + [_cell(arms[a]["macro_auc"]) for a in arms])
    rows.append([f"recall, {RARE_CLASSES} rarest"] + [_cell(arms[a]["rare_recall"]) for a in arms])

    def gain(a):
        g = arms[a]["gain_vs_control"]["balanced_accuracy"]
        return f"{g['mean']:+.3f}" + (f" +- {g['se']:.3f}" if g["se"] is not None else "")

    rows.append(["gain vs control (SE)"] + [gain(a) for a in arms])
    return header, rows

