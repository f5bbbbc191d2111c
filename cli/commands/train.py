"""`python main.py train (--cache CACHE | --data DIR) --run RUN (--steps N | --epochs E) [options]`.

Every `TrainConfig` field is an option (`--lr-g`, `--precision`, ...), with the field's help text.
With `--resume` the run's saved config.json is the starting point and only the options given on the
command line change it (e.g. `--steps` to train longer). `--data DIR` first prepares a cache of the
NIH folder into RUN/cache. Ctrl+C asks the run to stop after the current step and save a checkpoint;
a second Ctrl+C interrupts at once.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path

from core.errors import UserError
from core.gan.config import TrainConfig
from core.labels import DEFAULT_CLASSES

EXPLICIT = {"run", "cache", "resume", "steps", "epochs", "classes"}

SCALE_OUT = """\
GPU: install the gpu extra (pip install -e .[gpu]); TensorFlow then uses the GPU by itself. Use
--precision mixed_float16 on NVIDIA GPUs (mixed_bfloat16 on Ampere or newer, and on CPUs with AMX).
Several GPUs in one machine: --strategy mirrored (the batch is split over them; keep --batch a
multiple of the GPU count). Several machines: set TF_CONFIG on every machine, e.g.
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
(index 1 on the second machine), put the cache and the run folder on storage all of them can read,
and start the same command with --strategy multiworker on each machine at the same time. Worker 0
writes RUN; worker i keeps its own copy in RUN/worker_i.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = SCALE_OUT
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cache", help="prepared cache folder (from `prepare`)")
    source.add_argument("--data", metavar="DIR", help="NIH dataset folder: prepare a cache into RUN/cache first")
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder to create or resume")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps")
    length.add_argument("--epochs", type=int, help="passes over the training images")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), metavar="LIST",
                        help="with --data: comma-separated NIH labels, one class each")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    for f in fields(TrainConfig):
        if f.name in EXPLICIT:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=None, choices=f.metadata.get("choices"),
                                help=help_text)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The saved config when resuming, else the defaults; then every option given on the command line."""
    base = TrainConfig.load(Path(args.run) / "config.json") if args.resume else TrainConfig()
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name not in EXPLICIT and getattr(args, f.name, None) is not None}
    if args.steps is not None:
        given.update(steps=args.steps, epochs=0)
    if args.epochs is not None:
        given["epochs"] = args.epochs
    if args.cache:
        given["cache"] = args.cache
    return replace(base, run=args.run, resume=args.resume, **given)


def _prepare_into_run(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    from core.data.cache import PrepareConfig, prepare
    from core.jobs import Job
    from cli.terminal import ProgressBar

    classes = tuple(part.strip() for part in args.classes.split(",") if part.strip())
    out = Path(config.run) / "cache"
    Path(config.run).mkdir(parents=True, exist_ok=True)
    result = prepare(PrepareConfig(data=args.data, out=str(out), classes=classes, size=config.size),
                     job=Job(ProgressBar("prepare")))
    if result.failed:
        print(f"prepare: skipped {len(result.failed)} unreadable image(s), listed in {out / 'failed.txt'}",
              file=sys.stderr)
    return replace(config, cache=str(out))


def run(args: argparse.Namespace) -> int:
    from core.gan.trainer import TrainCallback, train
    from core.jobs import Job
    from cli.terminal import ProgressBar

    config = build_config(args)
    if args.data:
        config = _prepare_into_run(args, config)
    if not config.cache:
        raise UserError("train: give --cache CACHE or --data DIR")

    class Log(TrainCallback):
        def on_log(self, text):
            print(f"\n{text}", file=sys.stderr)

    job = Job(ProgressBar("train"), min_interval=0.5)
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum, frame):
        print("\nstopping after this step (Ctrl+C again to interrupt now)", file=sys.stderr)
        signal.signal(signal.SIGINT, previous)
        job.request_stop()

    signal.signal(signal.SIGINT, stop)
    try:
        summary = train(config, job=job, callbacks=[Log()])
    finally:
        signal.signal(signal.SIGINT, previous)
    result = {"run": summary.run_dir, "step": summary.step, "total_steps": summary.total_steps,
              "stopped": summary.stopped, "seconds": round(summary.seconds, 1),
              "images_per_s": round(summary.images_per_s, 1), "generator": summary.generator,
              "metrics": summary.metrics}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        # the trainer has already logged "finished/stopped at step N/M"
        print(f"{summary.seconds:.1f} s, {summary.images_per_s:.1f} images/s; generator: {summary.generator}")
    return 0
