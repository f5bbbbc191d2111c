"""Training throughput (images/s) and peak memory: the notebook way vs our engine, in one run.

    .venv/bin/python bench/train_throughput.py [--steps 3] [--only NAME ...]

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
  sngan64/128   our sngan, batch 64, fp32 and mixed_bfloat16
Ratios are against `notebook` per image. The machine is shared: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
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
    "sngan64_fp32": dict(arch="sngan", size=64, batch=64, precision="float32"),
    "sngan64_bf16": dict(arch="sngan", size=64, batch=64, precision="mixed_bfloat16"),
    "sngan128_fp32": dict(arch="sngan", size=128, batch=64, precision="float32"),
    "sngan128_bf16": dict(arch="sngan", size=128, batch=64, precision="mixed_bfloat16"),
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

    from core.gan.config import TrainConfig
    from core.gan.engine import GanEngine

    config = TrainConfig(run="unused", **spec)
    engine = GanEngine(config, N_CLASSES)
    rng = np.random.default_rng(0)
    real = engine.real_global
    images = tf.constant(rng.integers(0, 255, (real, config.size, config.size), dtype=np.uint8))
    labels = tf.constant(rng.integers(0, N_CLASSES, real).astype(np.int32))
    counter = iter(range(10 ** 9))

    def step():
        engine.train_step((images, labels), next(counter))

    return step, lambda: True


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
            "peak_mb": round(peak_mb), "both_trained": check()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after warm-up)")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run only these configurations")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.steps)))
        return 0
    results = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
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
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    base = next((r["images_per_s"] for r in results if r["name"] == "notebook"), None)
    print(f"{'configuration':<17} {'batch':>5} {'s/step':>8} {'images/s':>9} {'x notebook':>10} "
          f"{'peak MB':>8} {'load':>5}  trains both")
    for r in results:
        ratio = f"{r['images_per_s'] / base:.1f}" if base else "-"
        print(f"{r['name']:<17} {r['batch']:>5} {r['s_per_step']:>8.3f} {r['images_per_s']:>9.2f} {ratio:>10} "
              f"{r['peak_mb']:>8} {r['load']:>5}  {r['both_trained']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
