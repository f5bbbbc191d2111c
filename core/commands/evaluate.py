"""`evaluate`: measure a trained generator against the real images (report.json and plots in the run)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder holding generator.keras and config.json")
    parser.add_argument("--data", default="", help="prepared cache or NIH dataset folder (default: the run's cache)")
    parser.add_argument("--n", type=int, default=500, help="generated images per class (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and the evaluator (default 0)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of the evaluator classifier")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def format_report(report: dict) -> str:
    """The headline numbers as an aligned table, one row per class."""
    classes = report["classes"]
    rows = [("class", "eval acc", "cond acc", "FD", "FD real", "KID", "MS-SSIM gen", "MS-SSIM real", "copies")]
    for c in classes:
        rows.append((c, report["evaluator"]["per_class"][c], report["conditional_accuracy"]["per_class"][c],
                     report["frechet_distance"]["per_class"][c], report["frechet_distance"]["real_held_out_per_class"][c],
                     report["kid"]["per_class"][c], report["ms_ssim"]["generated_per_class"][c],
                     report["ms_ssim"]["real_per_class"][c], report["memorisation"]["flagged_per_class"][c]))
    rows.append(("overall", report["evaluator"]["held_out_accuracy"], report["conditional_accuracy"]["mean"],
                 report["frechet_distance"]["overall"], report["frechet_distance"]["real_held_out_overall"],
                 report["kid"]["overall"], report["ms_ssim"]["generated_mean"], report["ms_ssim"]["real_mean"],
                 report["memorisation"]["flagged"]))
    text = [[("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in text]
    lines.append(f"chance conditional accuracy {report['conditional_accuracy']['chance']:.3f}; "
                 f"{report['memorisation']['flagged']} near-copies of training images; plots in "
                 f"{report['run']}/evaluation")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from core.evaluate import EvaluateConfig, evaluate
    from core.jobs import Job
    from core.terminal import ProgressBar

    config = EvaluateConfig(run=args.run, data=args.data, n=args.n, seed=args.seed, classifier_steps=args.steps)
    report = evaluate(config, job=Job(ProgressBar("evaluate")))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
