"""Training throughput (images/s) and peak memory: the notebook way vs our engine, in one run.

    .venv/bin/python bench/train_throughput.py [--steps 3] [--only NAME ...] [--rounds 1]
    .venv/bin/python bench/train_throughput.py --profile sngan64     # the top TensorFlow ops of one step
    .venv/bin/python bench/train_throughput.py --profile sngan128 --by model layer   # ... by model, by layer

Every configuration runs in its own fresh interpreter (clean peak RSS, no shared TF state), a warm-up
step first (tracing/compilation), then `--steps` timed steps on random data. images/s counts the
images of one step = the batch (for the reference: batch/2 real + batch/2 fake for D, batch for G).
Configurations:
  notebook      the reference written the notebook way (combined model, train_on_batch,
                generator.predict) with the trainable fix: D's train function is traced while D is
                trainable, before it is frozen in the combined model; batch 4 because a batch-100
                step takes ~9 minutes on this CPU
  reference     our `reference` (same model, one compiled step, FFT weight gradient for the 16x16 conv)
  reference_xlalast  the same with that conv compiled by XLA instead
  reference_noxla  the same without XLA (shows what the compiled output layer buys)
  reference_xlastep  the whole step compiled by XLA instead of only the output layer
  reference_b16 our `reference` at batch 16 (the per-image rate at a larger batch)
  reference_bf16  our `reference` in mixed_bfloat16
  sngan64/128   the default model (TrainConfig defaults: width 16, batch 32) in its default precision (auto)
  sngan64/128_fp32, _bf16  the same in float32 / mixed_bfloat16 (on a CPU without AMX/AVX512-BF16
                the engine falls back to float32: the 'precision' column shows what ran)
  sngan64/128_prev  the default before issue 9: latent_blocks off, channels 32, float32
  sngan64/128_s15  the default until 2026-11-26 (width 32, batch 64, class loss weight 1)
  sngan128_unfolded  the default with the class guide's first layer reading single pixels (guide_fold 1,
                the default until 2026-12-06; _prev and _s15 keep it too)
  sngan64_c16, _c8  width 16 / 8 at batch 64 (cost falls about with the square of the width)
  sngan64_c8_bf16emu  width 8 in mixed_bfloat16 forced on, what the float32 fallback avoids on CPUs
                without AMX/AVX512-BF16 (TensorFlow then emulates bfloat16)
Ratios: x notebook per image; for sngan rows also x fp32, x prev and x s15 of the same size in this run.
With --rounds R every configuration runs R times, interleaved, and the median is shown: the machine
is shared, so compare rows of one run. The load average (1 min) is printed per row.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {
    "notebook": dict(arch="notebook", size=128, batch=4),
    "reference": dict(arch="reference", size=128, batch=4, xla="fft"),
    "reference_xlalast": dict(arch="reference", size=128, batch=4, xla="last_layer"),
    "reference_b16": dict(arch="reference", size=128, batch=16, xla="fft"),
    "reference_bf16": dict(arch="reference", size=128, batch=4, xla="fft", precision="mixed_bfloat16"),
    "reference_noxla": dict(arch="reference", size=128, batch=4, xla="off"),
    "reference_xlastep": dict(arch="reference", size=128, batch=4, xla="step"),
    "sngan64": dict(arch="sngan", size=64, batch=32),
    "sngan64_fp32": dict(arch="sngan", size=64, batch=32, precision="float32"),
    "sngan64_bf16": dict(arch="sngan", size=64, batch=32, precision="mixed_bfloat16"),
    "sngan64_prev": dict(arch="sngan", size=64, batch=64, precision="float32", latent_blocks=False, channels=32),
    "sngan64_s15": dict(arch="sngan", size=64, batch=64, channels=32, ac_weight=1.0),
    "sngan64_c16": dict(arch="sngan", size=64, batch=64, channels=16),
    "sngan64_c8": dict(arch="sngan", size=64, batch=64, channels=8),
    "sngan64_c8_bf16emu": dict(arch="sngan", size=64, batch=64, channels=8, precision="mixed_bfloat16",
                               emulate_bf16=True),
    "sngan128": dict(arch="sngan", size=128, batch=32),
    "sngan128_fp32": dict(arch="sngan", size=128, batch=32, precision="float32"),
    "sngan128_bf16": dict(arch="sngan", size=128, batch=32, precision="mixed_bfloat16"),
    "sngan128_prev": dict(arch="sngan", size=128, batch=64, precision="float32", latent_blocks=False, channels=32,
                          guide_fold=1),
    "sngan128_s15": dict(arch="sngan", size=128, batch=64, channels=32, ac_weight=1.0, guide_fold=1),
    "sngan128_unfolded": dict(arch="sngan", size=128, batch=32, guide_fold=1),
}
N_CLASSES = 7


def _notebook_step_fn(batch: int):
    """The notebook's training step, Keras 3, with the trainable fix. Returns step() -> None."""
    import keras
    import numpy as np

    from core.gan.models import reference_discriminator, reference_generator

    g = reference_generator(N_CLASSES, 100)
    d = reference_discriminator(N_CLASSES, 128)
    d.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    half = batch // 2
    real = rng.uniform(-1, 1, (half, 128, 128, 1)).astype(np.float32)
    real_labels = rng.integers(0, N_CLASSES, half).astype(np.int32)
    d.train_on_batch([real, real_labels], np.ones((half, 1)))     # the fix: trace D's step while trainable
    d.trainable = False
    z_in, label_in = g.inputs
    gan = keras.Model([z_in, label_in], d([g([z_in, label_in]), label_in]))
    gan.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    before = [w.copy() for w in d.get_weights()]

    def step():
        z = rng.standard_normal((half, 100)).astype(np.float32)
        labels = rng.integers(0, N_CLASSES, half).astype(np.int32)
        fake = g.predict([z, labels], verbose=0)
        d.train_on_batch([real, real_labels], np.ones((half, 1)))
        d.train_on_batch([fake, labels], np.zeros((half, 1)))
        z = rng.standard_normal((batch, 100)).astype(np.float32)
        labels = rng.integers(0, N_CLASSES, batch).astype(np.int32)
        gan.train_on_batch([z, labels], np.ones((batch, 1)))

    def d_trained() -> bool:
        return any(not np.array_equal(a, b) for a, b in zip(before, d.get_weights()))

    return step, d_trained


def _engine_step_fn(spec: dict):
    import numpy as np
    import tensorflow as tf

    from core.gan import engine as engine_module
    from core.gan.config import TrainConfig
    from core.gan.engine import GanEngine

    spec = dict(spec)
    if spec.pop("emulate_bf16", False):   # run bfloat16 even where the engine would fall back to float32
        engine_module.cpu_supports_bf16 = lambda: True
    config = TrainConfig(run="unused", **spec)
    engine = GanEngine(config, N_CLASSES)
    rng = np.random.default_rng(0)
    real = engine.real_global
    images = tf.constant(rng.integers(0, 255, (real, config.size, config.size), dtype=np.uint8))
    labels = tf.constant(rng.integers(0, N_CLASSES, real).astype(np.int32))
    counter = iter(range(10 ** 9))

    def step():
        engine.train_step((images, labels), next(counter))

    step.precision = engine.precision
    return step, lambda: True


_MODEL = re.compile(r"(sngan_generator|sngan_discriminator|class_guide|reference_generator|reference_discriminator)"
                    r"(?:_\d+)?/([A-Za-z_0-9]+)/")


def op_times(logdir: str) -> collections.Counter:
    """Picoseconds per op instance (its full name, e.g. 'gradient_tape/class_guide_3/conv2d_1/...:Conv2D')
    in a profiler trace; only the op executions, not the Eigen pool lines that are their shards."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as handle:
        space.ParseFromString(handle.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                for event in line.events:
                    totals[plane.event_metadata[event.metadata_id].name] += event.duration_ps
    for name in [name for name in totals if name.rsplit(":", 1)[-1] == "Process"]:
        del totals[name]                             # the executor's own span encloses the ops
    return totals


def group_times(totals: collections.Counter, by: str) -> collections.Counter:
    """Sum op times by op type ('op'), by model and pass ('model': e.g. 'class_guide backward'), or by
    layer and pass ('layer': e.g. 'class_guide/conv2d_1 forward'). Layer names are TensorFlow's name
    scopes: a layer's second call in a step is scoped like a layer of the same name with a suffix (the
    first call of `up_conv_4` is 'up_conv_4', its second 'up_conv_4_1'), so a layer called several times
    shows once per call. Ops outside the models are 'other'."""
    grouped: collections.Counter = collections.Counter()
    for name, ps in totals.items():
        if by == "op":
            grouped[name.rsplit(":", 1)[-1]] += ps
            continue
        found = _MODEL.search(name)
        where = "other" if not found else found.group(1) if by == "model" else f"{found.group(1)}/{found.group(2)}"
        grouped[f"{where} {'backward' if name.startswith('gradient_tape') else 'forward'}"] += ps
    return grouped


def profile(name: str, steps: int, overrides: dict, by: tuple[str, ...] = ("op",), top: int = 15) -> None:
    """Print where `steps` steps of one configuration spend their compute time (after two warm-up steps):
    the top op types, models or layers (`by`)."""
    import tempfile

    import tensorflow as tf

    from core.gan.config import TrainConfig

    spec = dict(CONFIGS[name])
    for field, text in overrides.items():
        default = getattr(TrainConfig(run="x"), field)
        spec[field] = text.lower() in ("1", "true") if isinstance(default, bool) else type(default)(text)
    step, _ = _engine_step_fn(spec)
    step()
    step()
    logdir = tempfile.mkdtemp(prefix="cxr_profile_")
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - t) / steps
    tf.profiler.experimental.stop()
    totals = op_times(logdir)
    everything = sum(totals.values()) or 1
    print(f"{name} {overrides or ''}: {seconds:.3f} s/step under the profiler (load {os.getloadavg()[0]:.1f}), "
          f"{everything / 1e9 / steps:.0f} ms of op time per step (summed over threads)")
    for grouping in by:
        print(f"top {grouping}s by time:")
        for key, ps in group_times(totals, grouping).most_common(top):
            print(f"  {key:<48} {ps / 1e9 / steps:9.1f} ms/step {ps / everything:6.1%}")


def run_one(name: str, steps: int) -> dict:
    spec = dict(CONFIGS[name])
    if spec["arch"] == "notebook":
        step, check = _notebook_step_fn(spec["batch"])
    else:
        step, check = _engine_step_fn(spec)
    t = time.perf_counter()
    step()
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": name, "batch": spec["batch"], "steps": steps, "warmup_s": round(warmup, 2),
            "s_per_step": round(seconds / steps, 3), "images_per_s": round(spec["batch"] * steps / seconds, 2),
            "peak_mb": round(peak_mb), "both_trained": check(),
            "precision": getattr(step, "precision", "float32")}


def _ratio(row: dict, rows: dict, other: str) -> str:
    base = rows.get(other)
    return f"{row['images_per_s'] / base['images_per_s']:.2f}" if base and other != row["name"] else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after warm-up)")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run only these configurations")
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, interleaved")
    parser.add_argument("--profile", choices=[n for n in CONFIGS if n != "notebook"],
                        help="print the top TensorFlow ops of one configuration instead")
    parser.add_argument("--by", nargs="+", choices=("op", "model", "layer"), default=["op"],
                        help="with --profile: group op time by op type, by model and pass, or by layer and pass")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="with --profile: override a TrainConfig field (e.g. channels=16)")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.steps, dict(item.split("=", 1) for item in args.set), tuple(args.by))
        return 0
    if args.child:
        print(json.dumps(run_one(args.child, args.steps)))
        return 0
    runs: dict[str, list[dict]] = {}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    for _ in range(args.rounds):
        for name in args.only or list(CONFIGS):
            load = os.getloadavg()[0]
            steps = max(2, args.steps // 2) if name in ("notebook", "reference_noxla") else args.steps * 3
            proc = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(steps)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{name}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["load"] = round(load, 1)
            runs.setdefault(name, []).append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    rows = {name: sorted(found, key=lambda r: r["images_per_s"])[len(found) // 2] for name, found in runs.items()}
    base = rows.get("notebook")
    print(f"{'configuration':<17} {'precision':<15} {'batch':>5} {'s/step':>8} {'images/s':>9} {'x notebook':>10} "
          f"{'x fp32':>6} {'x prev':>6} {'x s15':>6} {'peak MB':>8} {'load':>5}  trains both")
    for name, r in rows.items():
        ratio = f"{r['images_per_s'] / base['images_per_s']:.1f}" if base else "-"
        size = name[len("sngan"):].split("_")[0] if name.startswith("sngan") else ""
        fp32 = _ratio(r, rows, f"sngan{size}_fp32") if size else "-"
        prev = _ratio(r, rows, f"sngan{size}_prev") if size else "-"
        s15 = _ratio(r, rows, f"sngan{size}_s15") if size else "-"
        print(f"{name:<17} {r.get('precision', '-'):<15} {r['batch']:>5} {r['s_per_step']:>8.3f} "
              f"{r['images_per_s']:>9.2f} {ratio:>10} {fp32:>6} {prev:>6} {s15:>6} {r['peak_mb']:>8} {r['load']:>5}  "
              f"{r['both_trained']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
