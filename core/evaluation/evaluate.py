"""An honest quality evaluation of a trained generator, against the real images it learned from.

No pretrained network can be downloaded here, so the judge is a small classifier the tool trains on the
real training split (`core.evaluation.classifier`, cached in the run folder). Measures, per class and
overall (the measures themselves are in `core.evaluation.measures`):

- the evaluator's own accuracy on held-out real images (how far to trust the rest);
- conditional accuracy: the share of generated images the evaluator puts in the conditioned class
  (a generator that ignores its label scores near chance, 1 / number of classes);
- Fréchet distance and KID between generated and real training images in the evaluator's features,
  beside the same figures for held-out real vs training real (the floor a perfect generator would
  reach), and the FD as a ratio to that floor (relative FD: 1 = as close as other real patients);
- precision, recall, density and coverage (k = 5) in the same features, generated vs training real,
  beside held-out real vs training real as the reference;
- diversity: mean pairwise MS-SSIM within a class, generated beside real (higher = more alike);
- memorisation: each generated image's copy ratio to its nearest training image (~0 for a copy, ~1
  for a new image); images under the near-copy bar of held-out real images are listed with the
  nearest training image's file name and patient id, since a copy re-identifies its patient.

Writes `report.json`, PNG plots and `report.html` to `RUN/evaluation/`. One evaluation job per run at a
time: `evaluate` and `augment-bench` both hold the lock of RUN/evaluation (and of `--out`) for the whole
job (`holding_evaluation_folder`), so their reports never interleave; a second one is refused at once.
"""
from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.atomic import reporting_write_errors, write_error
from core.cleanup import EVALUATION_LEFTOVERS, remove_leftovers
from core.errors import UserError
from core.evaluation.classifier import ClassifierConfig, Embedder, accuracy_per_class, cached_classifier
from core.evaluation.measures import (PRDC_K, frechet_distance, kernel_inception_distance, mean_pairwise_ms_ssim,
                                      memorisation_ratios, ms_ssim_scales, pixel_vectors, prdc)
from core.evaluation.real_data import RealData, open_real_data
from core.evaluation.recipe import copy_threshold
from core.evaluation.tensorboard import evaluation_scalars, log_to_board
from core.jobs import Job
from core.locks import hold_lock
from core.options import option

REPORT_NAME = "report.json"
MAX_REAL_PER_CLASS = 2000
MAX_SEEDS_LISTED = 10


@dataclass
class EvaluateConfig:
    run: str = option("", "Run folder holding generator.keras and config.json.")
    data: str = option("", "Real images: a prepared cache or an NIH dataset folder; empty = the run's training "
                           "cache.")
    n: int = option(500, "Generated images per class.")
    seed: int = option(0, "Seed of the latents and of the evaluator classifier.")
    classifier_steps: int = option(800, "Training steps of the evaluator classifier (batch 64); on the phantom "
                                        "data at 64 px its held-out accuracy is 0.82 after 400 steps, 0.95 after 800.")
    pairs: int = option(200, "Image pairs per class for the MS-SSIM diversity measure.")
    out: str = option("", "Folder for report.json, plots and report.html; empty = RUN/evaluation.")

    def check(self) -> None:
        if not self.run:
            raise UserError("evaluate: --run (the run folder) is required")
        if self.n < 2:
            raise UserError("evaluate: --n must be at least 2 generated images per class")
        if self.classifier_steps < 1 or self.pairs < 1:
            raise UserError("evaluate: --classifier-steps and --pairs must be at least 1")


def _per_class(values) -> dict:
    return {name: (None if v is None else round(float(v), 4)) for name, v in values}


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _ratio(value, floor) -> float | None:
    return None if value is None or floor is None or floor <= 0 else round(float(value / floor), 3)


def _subsample_per_class(labels: np.ndarray, n_classes: int, cap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(labels == c) for c in range(n_classes)]
    return np.sort(np.concatenate([r if len(r) <= cap else rng.choice(r, cap, replace=False) for r in rows]))


def generate_per_class(generator, n: int, seed: int, job: Job, progress: tuple[int, int]):
    """n images of every class, from latent seeds drawn with `seed`; returns (images, labels, seeds)."""
    labels = np.repeat(np.arange(len(generator.classes)), n).astype(np.int32)
    seeds = np.random.default_rng(seed).choice(2 ** 52, size=len(labels), replace=False)
    offset, total = progress
    batches = []
    for batch in generator.iter_batches(labels, seeds):
        job.check()
        batches.append(batch)
        job.report(offset + sum(len(b) for b in batches), total, "generating")
    return np.concatenate(batches), labels, seeds


def _feature_distances(gen: tuple, real: tuple, held_out: tuple, classes: list[str], seed: int) -> dict:
    """FD and KID, generated vs training real, beside held-out real vs training real (the floor)."""
    (gen_f, gen_y), (real_f, real_y), (test_f, test_y) = gen, real, held_out
    section = {}
    for name, distance in (("frechet_distance", frechet_distance),
                           ("kid", lambda a, b: kernel_inception_distance(a, b, seed=seed))):
        per_class = {c: distance(gen_f[gen_y == i], real_f[real_y == i]) for i, c in enumerate(classes)}
        floor = {c: distance(test_f[test_y == i], real_f[real_y == i]) for i, c in enumerate(classes)}
        overall, floor_overall = distance(gen_f, real_f), distance(test_f, real_f)
        section[name] = {"overall": _round(overall), "per_class": _per_class(per_class.items()),
                         "real_held_out_overall": _round(floor_overall),
                         "real_held_out_per_class": _per_class(floor.items())}
    fd = section["frechet_distance"]
    fd["ratio_overall"] = _ratio(fd["overall"], fd["real_held_out_overall"])
    fd["ratio_per_class"] = {c: _ratio(fd["per_class"][c], fd["real_held_out_per_class"][c]) for c in classes}
    return section


def _prdc_section(gen: tuple, real: tuple, held_out: tuple, classes: list[str]) -> dict:
    """PRDC of generated vs training real, beside held-out real vs training real (the reference)."""
    (gen_f, gen_y), (real_f, real_y), (test_f, test_y) = gen, real, held_out

    def rounded(values):
        return None if values is None else {k: round(v, 4) for k, v in values.items()}

    return {"k": PRDC_K,
            "generated": {"overall": rounded(prdc(real_f, gen_f)),
                          "per_class": {c: rounded(prdc(real_f[real_y == i], gen_f[gen_y == i]))
                                        for i, c in enumerate(classes)}},
            "real_reference": {"overall": rounded(prdc(real_f, test_f)),
                               "per_class": {c: rounded(prdc(real_f[real_y == i], test_f[test_y == i]))
                                             for i, c in enumerate(classes)}},
            "samples": {"generated_per_class": int(np.bincount(gen_y).max()) if len(gen_y) else 0,
                        "held_out": int(len(test_y)), "training": int(len(real_y))}}


def _diversity(gen: tuple, real: tuple, classes: list[str], pairs: int, seed: int) -> dict:
    (gen_x, gen_y), (real_x, real_y) = gen, real
    generated = [mean_pairwise_ms_ssim(gen_x[gen_y == i], pairs, seed) for i in range(len(classes))]
    reals = [mean_pairwise_ms_ssim(real_x[real_y == i], pairs, seed) for i in range(len(classes))]
    return {"scales": ms_ssim_scales(gen_x.shape[1]), "pairs_per_class": pairs,
            "generated_mean": _mean(generated), "real_mean": _mean(reals),
            "generated_per_class": _per_class(zip(classes, generated)),
            "real_per_class": _per_class(zip(classes, reals))}


def _memorisation(gen: tuple, seeds: np.ndarray, real: RealData, classes: list[str]):
    """The memorisation section, plus each generated image's copy ratio and nearest training index."""
    gen_x, gen_y = gen
    train_x, _ = real.part("train")
    test_x, _ = real.held_out()
    train_vectors = pixel_vectors(train_x)
    gen_nn, gen_index, gen_ratio = memorisation_ratios(pixel_vectors(gen_x), train_vectors)
    real_nn, _, real_ratio = memorisation_ratios(pixel_vectors(test_x), train_vectors)
    threshold = copy_threshold(real_ratio)
    flagged = gen_ratio < threshold
    listed = []  # one entry per training image that flagged generated images resemble
    for j in np.unique(gen_index[flagged]):
        near = np.flatnonzero(flagged & (gen_index == j))
        name, patient = real.identity("train", int(j))
        listed.append({"nearest_training_image": name, "nearest_patient_id": patient,
                       "class": classes[gen_y[near[0]]], "generated_images": int(near.size),
                       "min_copy_ratio": round(float(gen_ratio[near].min()), 4),
                       "latent_seeds": [int(seeds[i]) for i in near[:MAX_SEEDS_LISTED]]})
    listed.sort(key=lambda entry: entry["min_copy_ratio"])
    section = {"ratio_threshold": round(threshold, 4), "flagged": int(flagged.sum()),
               "flagged_share": round(float(flagged.mean()), 4),
               "flagged_per_class": {c: int(flagged[gen_y == i].sum()) for i, c in enumerate(classes)},
               "flagged_images": listed,  # grouped by the training image they resemble
               "median_ratio_generated": round(float(np.median(gen_ratio)), 4),
               "median_ratio_real_held_out": round(float(np.median(real_ratio)), 4),
               "median_distance_generated": round(float(np.median(gen_nn)), 5),
               "median_distance_real_held_out": round(float(np.median(real_nn)), 5)}
    return section, gen_ratio, gen_index


def _classification(test_probs, test_y, gen_probs, gen_y, classes: list[str], cached: bool, steps: int,
                    n_train: int) -> dict:
    """The evaluator's own held-out accuracy and the conditional accuracy of the generated images."""
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (gen_y, gen_probs.argmax(1)), 1)
    conditional = [float(confusion[c, c] / confusion[c].sum()) for c in range(k)]
    return {
        "evaluator": {"held_out_accuracy": round(float((test_probs.argmax(1) == test_y).mean()), 4),
                      "per_class": _per_class(zip(classes, accuracy_per_class(test_probs, test_y, k))),
                      "held_out_images": int(len(test_y)), "train_images": n_train, "steps": steps,
                      "cached": cached},
        "conditional_accuracy": {"mean": _mean(conditional), "chance": round(1 / k, 4),
                                 "per_class": _per_class(zip(classes, conditional)), "confusion": confusion.tolist()},
    }


@contextmanager
def holding_evaluation_folder(run_dir, out: str, job: Job):
    """Hold RUN/evaluation (and `out` when it is another folder) for a whole `evaluate` or `augment-bench`,
    so two of them never write one folder at once; a second gets "FOLDER is in use by process N
    (evaluation folder)" before anything is loaded. Holding it, remove what killed jobs left there.

    A run folder that does not exist is left to the generator loader to report (no lock file is made
    inside a mistyped path)."""
    run_dir = Path(run_dir)
    folders = [run_dir / "evaluation"]
    if out and Path(out).resolve() != folders[0].resolve():
        folders.append(Path(out))
    with ExitStack() as held:
        for folder in folders if run_dir.is_dir() else []:
            try:
                held.enter_context(hold_lock(folder, "evaluation folder"))
                removed = remove_leftovers(folder, EVALUATION_LEFTOVERS)
            except OSError as error:  # a read-only or full disk: one line naming the folder
                raise write_error(folder, error) from error
            if removed:
                job.log(f"{folder}: removed {len(removed)} leftover(s) of an interrupted evaluation")
        yield


def evaluate(config: EvaluateConfig, job: Job | None = None, real: RealData | None = None,
             generator=None) -> dict:
    """Run the whole evaluation, write report.json, plots and report.html, return the report."""
    job = job or Job()
    config.check()
    with holding_evaluation_folder(generator.run_dir if generator else config.run, config.out, job):
        return _evaluate_holding(config, job, real, generator)


def _evaluate_holding(config: EvaluateConfig, job: Job, real: RealData | None, generator) -> dict:
    from core.export.generator import load_generator, real_cache, trained_step

    started = time.monotonic()
    generator = generator or load_generator(config.run)
    out = Path(config.out) if config.out else Path(generator.run_dir) / "evaluation"
    if real is None:
        real = open_real_data(real_cache(generator, config.data, job), generator.classes, generator.size)
    real.require_training_and_test()
    classes, k = generator.classes, len(generator.classes)
    train_x, train_y = real.part("train")
    test_x, test_y = real.held_out()
    total = config.classifier_steps + k * config.n + 3
    judge_folder = Path(generator.run_dir) / "evaluation"
    with reporting_write_errors(judge_folder):  # a full or read-only disk: one line naming the folder
        model, cached = cached_classifier(judge_folder, train_x, train_y, classes,
                                          ClassifierConfig(steps=config.classifier_steps, seed=config.seed), job,
                                          (0, total))
    done = config.classifier_steps
    embed = Embedder(model)
    gen_x, gen_y, gen_seeds = generate_per_class(generator, config.n, config.seed, job, (done, total))
    done += k * config.n
    keep = _subsample_per_class(train_y, k, MAX_REAL_PER_CLASS, config.seed)
    (test_probs, test_feats), (gen_probs, gen_feats) = embed(test_x), embed(gen_x)
    real_feats = embed(train_x[keep])[1]
    job.check()
    job.report(done + 1, total, "Fréchet distance, KID, PRDC, MS-SSIM")
    gen, train, held = (gen_feats, gen_y), (real_feats, train_y[keep]), (test_feats, test_y)
    report = {"run": str(generator.run_dir), "data": real.source, "classes": classes, "size": generator.size,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model_sha256": generator.sha256, "trained_step": trained_step(generator.run_dir),
              "n_per_class": config.n, "seed": config.seed,
              "train_counts": real.counts("train"), "held_out_counts": real.counts(real.held_out_split()),
              **_classification(test_probs, test_y, gen_probs, gen_y, classes, cached, config.classifier_steps,
                                len(train_y)),
              **_feature_distances(gen, train, held, classes, config.seed),
              "prdc": _prdc_section(gen, train, held, classes),
              "ms_ssim": _diversity((gen_x, gen_y), (train_x[keep], train_y[keep]), classes, config.pairs,
                                    config.seed)}
    job.check()
    job.report(done + 2, total, "nearest training images")
    report["memorisation"], gen_ratio, gen_index = _memorisation((gen_x, gen_y), gen_seeds, real, classes)
    job.check()
    from core.evaluation.plots import evaluation_figures, save_figures

    figures = evaluation_figures(report, gen=(gen_x, gen_y), train=(train_x, train_y), ratio=gen_ratio,
                                 index=gen_index, identity=lambda i: real.identity("train", int(i)))
    with reporting_write_errors(out):  # each file is written atomically: a failure leaves no partial file
        report["plots"] = save_figures(out, figures)
        report["seconds"] = round(time.monotonic() - started, 1)
        write_evaluation_outputs(out, report)
    log_to_board(generator.run_dir, evaluation_scalars(report), job=job)
    job.report(total, total, "done")
    return report


def write_evaluation_outputs(out: Path, report: dict) -> None:
    import json

    from core.atomic import atomic_write_text
    from core.evaluation.report import write_report

    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2) + "\n")
    write_report(out, run_dir=report["run"])


def report_table(report: dict) -> tuple[list[str], list[list]]:
    """The headline numbers, one row per class plus 'overall': for the CLI table and the GUI."""
    header = ["class", "eval acc", "cond acc", "FD", "FD real", "FD ratio", "precision", "recall", "coverage",
              "MS-SSIM gen", "MS-SSIM real", "copies"]
    ev, cond, fd = report["evaluator"], report["conditional_accuracy"], report["frechet_distance"]
    ssim, memo, pr = report["ms_ssim"], report["memorisation"], report["prdc"]["generated"]

    def p(values, key):
        return None if values is None else values[key]

    rows = [[c, ev["per_class"][c], cond["per_class"][c], fd["per_class"][c], fd["real_held_out_per_class"][c],
             fd["ratio_per_class"][c], p(pr["per_class"][c], "precision"), p(pr["per_class"][c], "recall"),
             p(pr["per_class"][c], "coverage"), ssim["generated_per_class"][c], ssim["real_per_class"][c],
             memo["flagged_per_class"][c]] for c in report["classes"]]
    rows.append(["overall", ev["held_out_accuracy"], cond["mean"], fd["overall"], fd["real_held_out_overall"],
                 fd["ratio_overall"], p(pr["overall"], "precision"), p(pr["overall"], "recall"),
                 p(pr["overall"], "coverage"), ssim["generated_mean"], ssim["real_mean"], memo["flagged"]])
    return header, rows
