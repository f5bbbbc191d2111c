"""`python main.py train --data (DIR | CACHE) --run RUN [--steps N | --epochs E | --minutes M] [options]`.

Every `TrainConfig` field is an option (`--lr-g`, `--precision`, `--classes`, ...), with the field's help
text. With `--resume` the run's saved config.json is the starting point and only the options given on
the command line change it (e.g. `--steps` to train longer). `--data DIR` prepares the NIH folder into
RUN/cache first. Ctrl+C asks the run to stop after the current step and save a checkpoint; a second
Ctrl+C interrupts at once.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

from cli.options import add_config_arguments, given_options
from core.gan.config import TrainConfig

SCALE_OUT = """\
GPU: install the gpu extra (pip install -e .[gpu]); TensorFlow then uses the GPU by itself. The default
--precision auto is mixed_float16 on NVIDIA GPUs, mixed_bfloat16 on CPUs with AMX or AVX512-BF16 and
float32 on other CPUs (mixed_bfloat16 on a GPU is a choice: Ampere or newer).
Several GPUs in one machine: --strategy mirrored (the batch is split over them; keep --batch a
multiple of the GPU count). Several machines: set TF_CONFIG on every machine, e.g.
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
(index 1 on the second machine), put the data and the run folder on storage all of them can read,
and start the same command with --strategy multiworker on each machine at the same time. Worker 0
writes RUN; worker i keeps its own copy in RUN/worker_i.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = SCALE_OUT
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser, TrainConfig)
    parser.add_argument("--cache", dest="data", default=None, help=argparse.SUPPRESS)  # before `--data` took caches
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The saved config when resuming, else the defaults; then every option given on the command line."""
    given = given_options(TrainConfig, args)
    if given.get("resume"):
        if not given.get("run"):
            from core.errors import UserError
            raise UserError("train: --resume needs --run RUN_DIR")
        base = TrainConfig.load(Path(given["run"]) / "config.json")
    else:
        base = TrainConfig()
    if "steps" in given and "epochs" not in given:
        given["epochs"] = 0
    return replace(base, **given)


def summary_json(summary) -> dict:
    return {"run": summary.run_dir, "step": summary.step, "total_steps": summary.total_steps,
            "stopped": summary.stopped, "reason": summary.reason, "seconds": round(summary.seconds, 1),
            "images_per_s": round(summary.images_per_s, 1), "generator": summary.generator,
            "metrics": summary.metrics}


def run(args: argparse.Namespace) -> int:
    from cli.terminal import terminal_job
    from core.jobs import Cancelled
    from core.tasks import run_train

    config = build_config(args)
    job = terminal_job("train", min_interval=0.5)
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum, frame):
        print("\nstopping after this step (Ctrl+C again to interrupt now)", file=sys.stderr)
        signal.signal(signal.SIGINT, previous)
        job.request_stop()

    signal.signal(signal.SIGINT, stop)
    try:
        summary = run_train(config, job)
    except Cancelled as stopped:
        if stopped.result is None:
            raise
        summary = stopped.result
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps(summary_json(summary), indent=2))
    else:
        # the trainer has already logged "finished/stopped at step N/M"
        print(f"{summary.seconds:.1f} s, {summary.images_per_s:.1f} images/s; generator: {summary.generator}")
    return 130 if summary.stopped else 0
