"""`augment-bench`: does adding synthetic images to the real training split help a classifier?"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder holding generator.keras and config.json")
    parser.add_argument("--data", default="", help="prepared cache or NIH dataset folder (default: the run's cache)")
    parser.add_argument("--seeds", type=int, default=3, help="classifier seeds per arm (default 3)")
    parser.add_argument("--steps", type=int, default=800, help="classifier training steps, the same in both arms")
    parser.add_argument("--synthetic-per-class", type=int, default=0, metavar="N",
                        help="synthetic images added per class (default: the mean real training count per class)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from core.evaluation.augment_bench import AugmentBenchConfig, augment_bench, gain_text, report_table
    from cli.commands.evaluate import aligned
    from core.jobs import Job
    from cli.terminal import ProgressBar

    config = AugmentBenchConfig(run=args.run, data=args.data, seeds=args.seeds, steps=args.steps,
                                synthetic_per_class=args.synthetic_per_class)
    report = augment_bench(config, job=Job(ProgressBar("augment-bench")))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(aligned(*report_table(report)))
        print(gain_text(report))
    return 0
