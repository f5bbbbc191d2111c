"""`evaluate`: measure a trained generator against the real images (report.json, plots and report.html
in RUN/evaluation). Every option is a field of `EvaluateConfig`."""
from __future__ import annotations

import argparse

from core.evaluation.evaluate import EvaluateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.options import add_config_arguments

    add_config_arguments(parser, EvaluateConfig)
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

    from cli.options import given_options
    from cli.terminal import terminal_job
    from core.evaluation.evaluate import report_table
    from core.evaluation.verdict import latest_verdict, verdict_text
    from core.tasks import run_evaluate

    config = EvaluateConfig(**given_options(EvaluateConfig, args))
    report = run_evaluate(config, terminal_job("evaluate"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(aligned(*report_table(report)))
        print(f"chance conditional accuracy {report['conditional_accuracy']['chance']:.3f}; FD ratio 1 = as far as "
              f"held-out real images; {report['memorisation']['flagged']} near-copies of training images")
        print(verdict_text(latest_verdict(report["run"])))
        print(f"report: {report['run']}/evaluation/report.html")
    return 0
