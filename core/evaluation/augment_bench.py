"""Does synthetic data help? The same classifier, with the same budget, trained on (a) the real training
split and (b) real plus synthetic images, over several seeds, scored on the held-out real test split.

Both arms use the evaluator's architecture and training (class-balanced batches, `steps` updates of
`batch` images), so they see the same number of images; only what the batches are drawn from differs.
Per seed, the two arms share the classifier seed, so the gain is a paired difference; its mean and
standard deviation across seeds say whether it is more than noise. Results go to
`RUN/evaluation/augment_bench.json` and `augment_bench.png`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.evaluation.evaluate import RealData, bar_chart, open_real_data
from core.evaluation.classifier import ClassifierConfig, Embedder, accuracy_per_class, auc_one_vs_rest, train_classifier
from core.export.generator import Generator, load_generator, real_cache
from core.jobs import Job

REPORT_NAME = "augment_bench.json"
PLOT_NAME = "augment_bench.png"


@dataclass
class AugmentBenchConfig:
    run: str
    data: str = ""                 # prepared cache or NIH dataset folder; "" = the run's own cache
    seeds: int = 3
    steps: int = 800               # classifier updates, the same in both arms
    synthetic_per_class: int = 0   # 0 = the mean number of real training images per class
    out: str = ""                  # "" = RUN/evaluation


def scores(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Per-class accuracy and one-vs-rest AUC, and their means over classes."""
    accuracy = accuracy_per_class(probs, labels, n_classes)
    auc = auc_one_vs_rest(probs, labels, n_classes)
    return {"accuracy": accuracy, "auc": auc,
            "mean_accuracy": float(np.mean([a for a in accuracy if a is not None])),
            "mean_auc": float(np.mean([a for a in auc if a is not None]))}


def _spread(values: list[list[float | None]]) -> tuple[list, list]:
    """Mean and sample standard deviation over seeds, element by element (None where undefined)."""
    mean, std = [], []
    for column in zip(*values):
        kept = [v for v in column if v is not None]
        mean.append(round(float(np.mean(kept)), 4) if kept else None)
        std.append(round(float(np.std(kept, ddof=1)), 4) if len(kept) > 1 else (0.0 if kept else None))
    return mean, std


def _summary(runs: list[dict], classes: list[str]) -> dict:
    acc_mean, acc_std = _spread([r["accuracy"] for r in runs])
    auc_mean, auc_std = _spread([r["auc"] for r in runs])
    (mean_acc,), (mean_acc_std,) = _spread([[r["mean_accuracy"]] for r in runs])
    (mean_auc,), (mean_auc_std,) = _spread([[r["mean_auc"]] for r in runs])
    return {"mean_accuracy": mean_acc, "mean_accuracy_std": mean_acc_std, "mean_auc": mean_auc,
            "mean_auc_std": mean_auc_std,
            "per_class": {c: {"accuracy": acc_mean[i], "accuracy_std": acc_std[i], "auc": auc_mean[i],
                              "auc_std": auc_std[i]} for i, c in enumerate(classes)}}


def _gain(real: list[dict], mixed: list[dict], key: str) -> dict:
    differences = [m[key] - r[key] for r, m in zip(real, mixed)]
    return {"mean": round(float(np.mean(differences)), 4),
            "std": round(float(np.std(differences, ddof=1)), 4) if len(differences) > 1 else 0.0,
            "per_seed": [round(float(d), 4) for d in differences]}


def augment_bench(config: AugmentBenchConfig, job: Job | None = None, real: RealData | None = None,
                  generator: Generator | None = None) -> dict:
    job = job or Job()
    started = time.monotonic()
    if config.seeds < 1 or config.steps < 1:
        raise UserError("augment-bench: --seeds and --steps must be at least 1")
    generator = generator or load_generator(config.run)
    if real is None:
        real = open_real_data(real_cache(generator, config.data, job), generator.classes, generator.size)
    classes, k = generator.classes, len(generator.classes)
    train_x, train_y = real.part("train")
    test_x, test_y = real.part("test")
    if len(test_y) == 0:
        test_x, test_y = real.held_out()
    if len(train_y) == 0 or len(test_y) == 0:
        raise UserError(f"{real.source}: needs real images in both the train and the test split")
    per_class = config.synthetic_per_class or max(1, int(round(len(train_y) / k)))
    total = config.seeds * (2 * config.steps + k * per_class)
    done = 0
    real_runs, mixed_runs = [], []
    for seed in range(config.seeds):
        classifier = ClassifierConfig(steps=config.steps, seed=seed)
        model = train_classifier(train_x, train_y, k, classifier, job, (done, total))
        done += config.steps
        real_runs.append(scores(Embedder(model)(test_x)[0], test_y, k))
        labels = np.repeat(np.arange(k), per_class).astype(np.int32)
        latent_seeds = np.random.default_rng([seed, 1]).choice(2 ** 52, size=len(labels), replace=False)
        synthetic = []
        for batch in generator.iter_batches(labels, latent_seeds):
            job.check()
            synthetic.append(batch)
            done += len(batch)
            job.report(done, total, f"seed {seed + 1}/{config.seeds}: generating")
        mixed_x = np.concatenate([train_x, *synthetic])
        mixed_y = np.concatenate([train_y, labels])
        model = train_classifier(mixed_x, mixed_y, k, classifier, job, (done, total))
        done += config.steps
        mixed_runs.append(scores(Embedder(model)(test_x)[0], test_y, k))
    report = {
        "run": str(generator.run_dir), "data": real.source, "classes": classes,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**asdict(config), "synthetic_per_class": per_class},
        "real_train_images": int(len(train_y)), "test_images": int(len(test_y)),
        "real": _summary(real_runs, classes), "real_plus_synthetic": _summary(mixed_runs, classes),
        "gain": {"mean_accuracy": _gain(real_runs, mixed_runs, "mean_accuracy"),
                 "mean_auc": _gain(real_runs, mixed_runs, "mean_auc")},
        "seconds": round(time.monotonic() - started, 1),
    }
    out = Path(config.out) if config.out else generator.run_dir / "evaluation"
    _write(out, report)
    job.report(total, total, "done")
    return report


def report_table(report: dict) -> tuple[list[str], list[list]]:
    """Per class and mean: accuracy and AUC of both arms as 'mean +- std' text, for the CLI and the GUI."""
    real, mixed = report["real"], report["real_plus_synthetic"]

    def cell(mean, std):
        return "-" if mean is None else f"{mean:.3f} +- {std:.3f}"

    header = ["class", "acc real", "acc real+syn", "AUC real", "AUC real+syn"]
    rows = [[c, cell(real["per_class"][c]["accuracy"], real["per_class"][c]["accuracy_std"]),
             cell(mixed["per_class"][c]["accuracy"], mixed["per_class"][c]["accuracy_std"]),
             cell(real["per_class"][c]["auc"], real["per_class"][c]["auc_std"]),
             cell(mixed["per_class"][c]["auc"], mixed["per_class"][c]["auc_std"])] for c in report["classes"]]
    rows.append(["mean", cell(real["mean_accuracy"], real["mean_accuracy_std"]),
                 cell(mixed["mean_accuracy"], mixed["mean_accuracy_std"]),
                 cell(real["mean_auc"], real["mean_auc_std"]), cell(mixed["mean_auc"], mixed["mean_auc_std"])])
    return header, rows


def gain_text(report: dict) -> str:
    acc, auc = report["gain"]["mean_accuracy"], report["gain"]["mean_auc"]
    return (f"gain over {report['config']['seeds']} seed(s): mean accuracy {acc['mean']:+.3f} +- {acc['std']:.3f}, "
            f"mean AUC {auc['mean']:+.3f} +- {auc['std']:.3f} "
            f"({report['config']['synthetic_per_class']} synthetic images per class)")


def _write(out: Path, report: dict) -> None:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    classes = report["classes"]
    arms = [("real only", report["real"]), ("real + synthetic", report["real_plus_synthetic"])]
    picture = bar_chart("held-out real accuracy per class (mean, whiskers +-1 std over seeds)", classes,
                        [(name, [arm["per_class"][c]["accuracy"] for c in classes]) for name, arm in arms],
                        spread=[[arm["per_class"][c]["accuracy_std"] for c in classes] for _, arm in arms])
    ok, encoded = cv2.imencode(".png", picture)
    if ok:
        (out / f".{PLOT_NAME}.tmp").write_bytes(encoded.tobytes())
        (out / f".{PLOT_NAME}.tmp").replace(out / PLOT_NAME)
        report["plot"] = PLOT_NAME
    tmp = out / f".{REPORT_NAME}.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / REPORT_NAME)
