"""Load a trained generator from a run folder and draw images from it, reproducibly.

Every image has its own integer latent seed: its latent vector is
`np.random.default_rng(seed).standard_normal(latent_dim)`, so a manifest that records (seed, class)
can regenerate any single image exactly, without replaying the rest of the export.

The model always runs on batches of the same size (the last batch is padded), so an image's pixels do
not depend on how many images were asked for at once: the same seed and class give the same uint8
image whether it was drawn in a batch of 5,000 or on its own.

`precision="bfloat16"` rebuilds the generator with Keras' mixed_bfloat16 policy (float32 weights,
bfloat16 compute, the output layer kept in float32): about 1.5x faster on CPUs with AMX/AVX512-BF16, with
pixels that differ from float32 by a few grey levels. The manifest records the precision, so
regeneration uses the same one and stays exact.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.errors import UserError

MODEL_FILE = "generator.keras"
CONFIG_FILE = "config.json"
DEFAULT_BATCH = 64
PRECISIONS = ("saved", "bfloat16")


class GeneratorError(UserError):
    """The run folder or its generator.keras is missing, unreadable or not one of our generators."""


def latent_vector(seed: int, latent_dim: int) -> np.ndarray:
    """The latent vector of one image, float32 (latent_dim,), fixed by its integer seed."""
    return np.random.default_rng(int(seed)).standard_normal(latent_dim).astype(np.float32)


def latent_batch(seeds, latent_dim: int, truncation: float = 1.0) -> np.ndarray:
    """Latent vectors of `seeds`, scaled by `truncation` (psi < 1 draws nearer the typical image)."""
    if not len(seeds):
        return np.zeros((0, latent_dim), np.float32)
    batch = np.stack([latent_vector(s, latent_dim) for s in seeds])
    return batch if truncation == 1.0 else (batch * np.float32(truncation)).astype(np.float32)


def to_uint8(batch: np.ndarray) -> np.ndarray:
    """Map generator output in [-1, 1], shape (N, S, S, 1) or (N, S, S), to uint8 (N, S, S)."""
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim == 4:
        batch = batch[..., 0]
    return np.clip(np.rint((batch + 1.0) * 127.5), 0, 255).astype(np.uint8)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise GeneratorError(f"{path}: missing; {run_dir} is not a training run folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GeneratorError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(config, dict):
        raise GeneratorError(f"{path}: expected a JSON object")
    return config


def _register_custom_layers() -> None:
    """Import the GAN modules so their registered custom layers are known to the safe loader."""
    for name in ("core.gan.layers", "core.gan.models"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise


@dataclass
class Generator:
    """A loaded generator with the facts the exporter and the evaluator need."""

    run_dir: Path
    model: Any
    config: dict[str, Any]
    classes: list[str]
    latent_dim: int
    size: int
    sha256: str
    batch_size: int = DEFAULT_BATCH
    precision: str = "saved"
    _predict: Any = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise UserError(f"class {name!r} is not one of this generator's classes: {', '.join(self.classes)}")
        return self.classes.index(name)

    def _run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self._predict is None:
            import tensorflow as tf

            model = self.model
            signature = [tf.TensorSpec((self.batch_size, self.latent_dim), tf.float32),
                         tf.TensorSpec((self.batch_size,), tf.int32)]
            self._predict = tf.function(lambda zz, yy: tf.cast(model([zz, yy], training=False), tf.float32),
                                        input_signature=signature)
        return self._predict(z, labels).numpy()

    def iter_batches(self, labels, seeds, truncation: float = 1.0) -> Iterator[np.ndarray]:
        """Yield uint8 (n, S, S) images batch by batch, in the order of `labels` / `seeds`; latents are
        scaled by `truncation`."""
        labels = np.asarray(labels, dtype=np.int32)
        seeds = np.asarray(seeds, dtype=np.int64)
        if labels.shape != seeds.shape:
            raise ValueError("labels and seeds must have the same length")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise UserError(f"class index out of range 0..{len(self.classes) - 1}")
        for start in range(0, len(labels), self.batch_size):
            y = labels[start:start + self.batch_size]
            n = len(y)
            z = np.zeros((self.batch_size, self.latent_dim), np.float32)
            z[:n] = latent_batch(seeds[start:start + n], self.latent_dim, truncation)
            padded = np.zeros(self.batch_size, np.int32)
            padded[:n] = y
            yield to_uint8(self._run(z, padded)[:n])

    def generate(self, labels, seeds, truncation: float = 1.0) -> np.ndarray:
        """uint8 (N, S, S) images for class indices `labels`, each from its latent seed."""
        batches = list(self.iter_batches(labels, seeds, truncation))
        return np.concatenate(batches) if batches else np.zeros((0, self.size, self.size), np.uint8)


def real_cache(generator: "Generator", data: str, job=None) -> Path:
    """The prepared cache of real images for this generator's classes and size (see RunPaths.real_data)."""
    from core.gan.runs import RunPaths

    return RunPaths(generator.run_dir).real_data(generator.config, data, generator.classes, generator.size, job)


def _check_signature(model: Any, path: Path, latent_dim: int, size: int) -> None:
    def refuse(problem: str) -> GeneratorError:
        return GeneratorError(f"{path}: not a cxr-workbench generator ({problem})")

    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 2:
        raise refuse(f"expected 2 inputs [z, label], found {len(inputs)}")
    z_shape, label_shape = tuple(inputs[0].shape), tuple(inputs[1].shape)
    if z_shape != (None, latent_dim):
        raise refuse(f"latent input has shape {z_shape}, config.json says latent_dim={latent_dim}")
    if label_shape not in ((None,), (None, 1)):
        raise refuse(f"label input has shape {label_shape}, expected (None,)")
    outputs = list(getattr(model, "outputs", None) or [])
    if len(outputs) != 1 or tuple(outputs[0].shape) != (None, size, size, 1):
        shapes = [tuple(o.shape) for o in outputs]
        raise refuse(f"output shape {shapes}, expected (None, {size}, {size}, 1)")


def _check_class_count(model: Any, config_path: Path, classes: list[str]) -> None:
    """A config.json listing more classes than the model embeds (hand-edited, or from another run) would fail
    deep in TensorFlow at the first extra class (issue 11 #7): refuse it at load, naming the file."""
    import keras

    embedded = [layer.input_dim for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if embedded and len(classes) > min(embedded):
        raise GeneratorError(f"{config_path}: lists {len(classes)} classes but the model was trained on "
                             f"{min(embedded)}")


def _run_classes(run_dir: Path, config: dict, config_path: Path) -> list[str]:
    """Class names in label order: config.json 'classes', else the classes of the cache the run trained on."""
    classes = config.get("classes")
    if classes is None:
        from core.data.cache import CacheError, PreparedCache

        for cache in ([Path(config["cache"])] if config.get("cache") else []) + [run_dir / "cache"]:
            try:
                classes = PreparedCache.open(cache).classes
                break
            except CacheError:
                continue
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise GeneratorError(f"{config_path}: no list of class names, neither as 'classes' nor from the "
                             "run's prepared cache")
    return list(classes)


def _config_int(config: dict, key: str, path: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GeneratorError(f"{path}: '{key}' must be a positive integer, found {value!r}")
    return value


def load_generator(run_dir, batch_size: int = DEFAULT_BATCH, precision: str = "saved") -> Generator:
    """Load `run_dir/generator.keras` safely (no code from the file runs) and check it is ours."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GeneratorError(f"{run_dir}: no such run folder")
    config = read_run_config(run_dir)
    config_path = run_dir / CONFIG_FILE
    latent_dim = _config_int(config, "latent_dim", config_path)
    size = _config_int(config, "size", config_path)
    classes = _run_classes(run_dir, config, config_path)
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise GeneratorError(f"{path}: missing; has this run saved a generator yet?")
    _register_custom_layers()
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any failure to parse the file is the user's bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GeneratorError(f"{path}: not a loadable cxr-workbench generator ({reason[:300]})") from error
    _check_signature(model, path, latent_dim, size)
    _check_class_count(model, config_path, classes)
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bfloat16":
        from core.gan.models import with_dtype_policy

        model = with_dtype_policy(model, "mixed_bfloat16", keep_outputs=True)   # the output layers in float32
    return Generator(run_dir=run_dir, model=model, config=config, classes=list(classes), latent_dim=latent_dim,
                     size=size, sha256=file_sha256(path), batch_size=batch_size, precision=precision)


def trained_step(run_dir) -> int | None:
    """The step the run's generator was saved at (its latest checkpoint, else its last metrics row),
    not the configured total: a stopped run's generator is that of the step it stopped at."""
    from core.gan.runs import RunPaths, read_metrics

    paths = RunPaths(Path(run_dir))
    latest = paths.latest_checkpoint()
    if latest is not None:
        try:
            return int(latest.stem.split("_")[-1])
        except ValueError:
            pass
    steps = [row["step"] for row in read_metrics(paths.metrics) if isinstance(row.get("step"), int)]
    return max(steps) if steps else None
