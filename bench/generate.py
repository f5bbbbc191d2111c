"""How fast is a labelled synthetic export at 128 px with the default (sngan) generator?

Builds an untrained sngan generator with the TrainConfig defaults (7 classes, latent 100, channels 32)
at 128 px in a temporary run folder (training changes the weights, not the work), then, in this one
process, measures:

- reference: `model.predict` in batches of 64, then `cv2.imwrite` of each image, one after the other;
- generation only: our fixed-batch `tf.function` (no PNG), to show what the model alone costs;
- export: the whole `core.export.export` (tEXt chunks, CSV, manifest, atomic folder) with PNG encoding
  in a thread pool overlapping generation; in float32 and with `precision="bfloat16"`.

Prints images/s, the ratio to the reference way, and the model's cost in GFLOP per image, which says
what the target asks of the CPU. Target: export >= 400 images/s.
Run: `.venv/bin/python bench/generate.py [--n 1024] [--batch 64]`
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.export.export import Demographics, ExportConfig, export  # noqa: E402
from core.export.generator import latent_batch, load_generator, to_uint8  # noqa: E402
from core.labels import DEFAULT_CLASSES  # noqa: E402

SIZE, LATENT, CHANNELS = 128, 100, 32


def make_run(folder: Path) -> Path:
    from core.gan.models import sngan_generator

    folder.mkdir(parents=True)
    sngan_generator(len(DEFAULT_CLASSES), SIZE, LATENT, CHANNELS).save(folder / "generator.keras")
    config = {"arch": "sngan", "size": SIZE, "latent_dim": LATENT, "channels": CHANNELS,
              "classes": list(DEFAULT_CLASSES), "seed": 0}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def gflop_per_image(run: Path) -> float:
    """Multiply-adds x 2 of the generator's convolutions and dense layers for one image."""
    import keras

    model = keras.saving.load_model(run / "generator.keras", compile=False)
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            flops += 2 * h * w * c_out * layer.input.shape[-1] * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops / 1e9


def demographics() -> Demographics:
    k = len(DEFAULT_CLASSES)
    return Demographics(age=np.full(k, 50), sex=np.array(["M"] * k), view=np.array(["PA"] * k),
                        labels=np.arange(k), max_patient_id=30805)


def reference(run: Path, out: Path, n: int, batch: int) -> float:
    import keras

    model = keras.saving.load_model(run / "generator.keras", compile=False)
    labels = np.arange(n, dtype=np.int32) % len(DEFAULT_CLASSES)
    z = latent_batch(np.arange(n), LATENT)
    model.predict([z[:batch], labels[:batch]], batch_size=batch, verbose=0)  # warm-up, as ours gets
    out.mkdir()
    start = time.perf_counter()
    images = to_uint8(model.predict([z, labels], batch_size=batch, verbose=0))
    for i, image in enumerate(images):
        cv2.imwrite(str(out / f"{i:06d}.png"), image)
    return time.perf_counter() - start


def generation_only(run: Path, n: int, batch: int, precision: str) -> float:
    generator = load_generator(run, batch_size=batch, precision=precision)
    generator.generate([0], [0])  # trace once
    labels = np.arange(n) % len(DEFAULT_CLASSES)
    start = time.perf_counter()
    generator.generate(labels, np.arange(n))
    return time.perf_counter() - start


def ours(run: Path, out: Path, n: int, batch: int, precision: str) -> float:
    generator = load_generator(run, batch_size=batch, precision=precision)
    generator.generate([0], [0])  # trace once, as the reference's warm-up
    per_class = -(-n // len(DEFAULT_CLASSES))
    config = ExportConfig(run=str(run), out=str(out), counts={c: per_class for c in DEFAULT_CLASSES},
                          batch_size=batch, precision=precision)
    start = time.perf_counter()
    result = export(config, demographics=demographics(), generator=generator)
    return (time.perf_counter() - start) * n / result.images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images per measurement")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = make_run(tmp / "run")
        gflop = gflop_per_image(run)
        rows = [("reference: predict + sequential imwrite", reference(run, tmp / "ref", args.n, args.batch))]
        rows.append(("generation only, float32 (no PNG)", generation_only(run, args.n, args.batch, "saved")))
        rows.append(("generation only, bfloat16 (no PNG)", generation_only(run, args.n, args.batch, "bfloat16")))
        rows.append(("export, float32", ours(run, tmp / "out32", args.n, args.batch, "saved")))
        rows.append(("export, bfloat16", ours(run, tmp / "outbf16", args.n, args.batch, "bfloat16")))
    base = args.n / rows[0][1]
    print(f"{args.n} images at {SIZE} px, sngan (channels {CHANNELS}), batch {args.batch}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'way':42s} {'seconds':>8s} {'images/s':>9s} {'vs reference':>13s}")
    for name, seconds in rows:
        rate = args.n / seconds
        print(f"{name:42s} {seconds:8.2f} {rate:9.1f} {rate / base:12.2f}x")
    print(f"target: export >= 400 images/s; the model costs {gflop:.2f} GFLOP per image, so 400 images/s needs "
          f"{400 * gflop:.0f} GFLOP/s of convolution; best measured here: "
          f"{args.n / min(s for _, s in rows) * gflop:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
