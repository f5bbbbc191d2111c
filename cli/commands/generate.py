"""`generate`: export labelled synthetic images in NIH format from a trained run.

Every option is a field of `ExportConfig`. Before exporting it prints the verdict of the run's latest
augmentation bench, and warns when the images were not shown to help (or no bench was run)."""
from __future__ import annotations

import argparse
import sys

from core.export.export import ExportConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.options import add_config_arguments

    add_config_arguments(parser, ExportConfig)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from cli.options import given_options
    from cli.terminal import terminal_job
    from core.errors import UserError
    from core.evaluation.verdict import latest_verdict, verdict_text
    from core.tasks import run_export

    config = ExportConfig(**given_options(ExportConfig, args))
    if not config.run:
        raise UserError("generate: --run (the run folder) is required")
    verdict = latest_verdict(config.run)
    print(verdict_text(verdict), file=sys.stderr)
    if verdict["verdict"] != "helps":
        print("warning: these images are not shown to help a classifier more than repeating your real images; "
              "run augment-bench before relying on them" if verdict["verdict"] == "not_run" else
              f"warning: the augmentation bench found that synthetic images {verdict['label']}", file=sys.stderr)
    result = run_export(config, terminal_job("export"))
    summary = {"out": str(result.out), "images": result.images, "seconds": round(result.seconds, 2),
               "images_per_second": round(result.images / max(result.seconds, 1e-9), 1), "per_class": result.per_class,
               "screening": result.screening, "verdict": verdict["verdict"]}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {result.images} images to {result.out} in {result.seconds:.1f} s "
              f"({summary['images_per_second']} images/s)")
        below = {c: s["below_bar"] for c, s in result.screening.get("per_class", {}).items() if s["below_bar"]}
        if below:
            print("note: too few candidates passed the recipe's judge for "
                  + ", ".join(f"{c} ({n} images below the bar)" for c, n in below.items()), file=sys.stderr)
    return 0
