"""`augment-bench`: do the synthetic images help a classifier more than repeating real images?
Every option is a field of `AugmentBenchConfig`; the verdict is printed last."""
from __future__ import annotations

import argparse

from core.evaluation.augment_bench import AugmentBenchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.options import add_config_arguments

    add_config_arguments(parser, AugmentBenchConfig)
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from cli.commands.evaluate import aligned
    from cli.options import given_options
    from cli.terminal import terminal_job
    from core.evaluation.augment_bench import report_table
    from core.tasks import run_augment_bench

    config = AugmentBenchConfig(**given_options(AugmentBenchConfig, args))
    report = run_augment_bench(config, terminal_job("augment-bench"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(aligned(*report_table(report)))
        print(f"verdict: {report['verdict_text']}")
        print(f"advice: {report['recommended']['advice']}")
        print(f"report: {report['run']}/evaluation/report.html")
    return 0
