"""`augment-bench`: does adding synthetic images to the real training split help a classifier?"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder holding generator.keras and config.json")
    parser.add_argument("--data", default="", help="prepared cache or NIH dataset folder (default: the run's cache)")
    parser.add_argument("--seeds", type=int, default=3, help="classifier seeds per arm (default 3)")
    parser.add_argument("--steps", type=int, default=400, help="classifier training steps, the same in both arms")
    parser.add_argument("--synthetic-per-class", type=int, default=0, metavar="N",
                        help="synthetic images added per class (default: the mean real training count per class)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def format_report(report: dict) -> str:
    real, mixed = report["real"], report["real_plus_synthetic"]

    def cell(mean, std):
        return "-" if mean is None else f"{mean:.3f} +- {std:.3f}"

    rows = [("class", "acc real", "acc real+syn", "AUC real", "AUC real+syn")]
    for c in report["classes"]:
        r, m = real["per_class"][c], mixed["per_class"][c]
        rows.append((c, cell(r["accuracy"], r["accuracy_std"]), cell(m["accuracy"], m["accuracy_std"]),
                     cell(r["auc"], r["auc_std"]), cell(m["auc"], m["auc_std"])))
    rows.append(("mean", cell(real["mean_accuracy"], real["mean_accuracy_std"]),
                 cell(mixed["mean_accuracy"], mixed["mean_accuracy_std"]),
                 cell(real["mean_auc"], real["mean_auc_std"]), cell(mixed["mean_auc"], mixed["mean_auc_std"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    gain_acc, gain_auc = report["gain"]["mean_accuracy"], report["gain"]["mean_auc"]
    lines.append(f"gain over {report['config']['seeds']} seeds: mean accuracy {gain_acc['mean']:+.3f} +- "
                 f"{gain_acc['std']:.3f}, mean AUC {gain_auc['mean']:+.3f} +- {gain_auc['std']:.3f} "
                 f"({report['config']['synthetic_per_class']} synthetic images per class)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from core.augment_bench import AugmentBenchConfig, augment_bench
    from core.jobs import Job
    from core.terminal import ProgressBar

    config = AugmentBenchConfig(run=args.run, data=args.data, seeds=args.seeds, steps=args.steps,
                                synthetic_per_class=args.synthetic_per_class)
    report = augment_bench(config, job=Job(ProgressBar("augment-bench")))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
