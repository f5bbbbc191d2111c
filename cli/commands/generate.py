"""`generate`: export labelled synthetic images in NIH format from a trained run."""
from __future__ import annotations

import argparse

from core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder holding generator.keras and config.json")
    parser.add_argument("--out", required=True, help="export folder to create (must be empty or new)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--per-class", type=int, metavar="N", help="N images of every class of the generator")
    amount.add_argument("--counts", metavar="SPEC", help='images per class, e.g. "Mass=200,Nodule=50"')
    parser.add_argument("--seed", type=int, default=0, help="seed for latent seeds and demographics (default 0)")
    parser.add_argument("--size", type=int, default=0, metavar="PX",
                        help="exported side in pixels (default: the model's)")
    parser.add_argument("--data", default="", help="prepared cache to draw age/sex/view from (default: the run's)")
    parser.add_argument("--precision", choices=("saved", "bfloat16"), default="saved",
                        help="compute as the model was saved, or in bfloat16 (faster on AMX/AVX512-BF16 CPUs; "
                             "pixels differ by a few grey levels, recorded in the manifest)")
    parser.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from core.export.export import ExportConfig, export, parse_counts
    from core.export.generator import load_generator
    from core.jobs import Job
    from cli.terminal import ProgressBar

    generator = load_generator(args.run, precision=args.precision)
    if args.per_class is not None:
        if args.per_class < 1:
            raise UserError("--per-class must be at least 1")
        counts = {name: args.per_class for name in generator.classes}
    else:
        counts = parse_counts(args.counts)
    config = ExportConfig(run=args.run, out=args.out, counts=counts, seed=args.seed, size=args.size,
                          force=args.force, data=args.data, precision=args.precision)
    result = export(config, job=Job(ProgressBar("export")), generator=generator)
    summary = {"out": str(result.out), "images": result.images, "seconds": round(result.seconds, 2),
               "images_per_second": round(result.images / max(result.seconds, 1e-9), 1), "per_class": result.per_class}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {result.images} images to {result.out} in {result.seconds:.1f} s "
              f"({summary['images_per_second']} images/s)")
    return 0
