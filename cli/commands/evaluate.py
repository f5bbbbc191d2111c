"""`evaluate`: measure a trained generator against the real images (report.json and plots in the run)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder holding generator.keras and config.json")
    parser.add_argument("--data", default="", help="prepared cache or NIH dataset folder (default: the run's cache)")
    parser.add_argument("--n", type=int, default=500, help="generated images per class (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and the evaluator (default 0)")
    parser.add_argument("--steps", type=int, default=800, help="training steps of the evaluator classifier")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def aligned(header: list[str], rows: list[list]) -> str:
    """A plain-text table: first column left-aligned, numbers to 3 decimals, None as '-'."""
    text = [header] + [[("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row]
                       for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))) for row in text)


def run(args: argparse.Namespace) -> int:
    import json

    from core.evaluation.evaluate import EvaluateConfig, evaluate, report_table
    from core.jobs import Job
    from cli.terminal import ProgressBar

    config = EvaluateConfig(run=args.run, data=args.data, n=args.n, seed=args.seed, classifier_steps=args.steps)
    report = evaluate(config, job=Job(ProgressBar("evaluate")))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(aligned(*report_table(report)))
        print(f"chance conditional accuracy {report['conditional_accuracy']['chance']:.3f}; "
              f"{report['memorisation']['flagged']} near-copies of training images; "
              f"report and plots in {report['run']}/evaluation")
    return 0
