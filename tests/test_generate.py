"""Loading generators safely and drawing reproducible images from per-image latent seeds.

The toy runs built here (`write_toy_run`) stand in for trained GANs in the export, evaluation and
augmentation tests: each is a real `generator.keras` with our input/output contract, whose behaviour
is known exactly (follows its label, ignores it, or copies training images).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

TOY_CLASSES = ["No Finding", "Mass", "Effusion"]


def toy_pattern(label: int, size: int) -> np.ndarray:
    """The class's picture in [-1, 1]: a grey 'body' with a bright square at a class-specific place."""
    image = np.full((size, size), -0.8, np.float32)
    image[size // 8: -size // 8, size // 6: -size // 6] = -0.2
    side = size // 4
    row = size // 8 + (label * size // 4) % (size - side - size // 8)
    col = size // 6 if label % 2 == 0 else size - size // 6 - side
    image[row:row + side, col:col + side] = 0.9
    return image


def toy_real_data(per_class: int, size: int = 32, n_classes: int = 3, seed: int = 0):
    """'Real' images of the toy patterns with noise: uint8 (N, S, S), labels, train/val/test split."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class).astype(np.int32)
    images = np.stack([toy_pattern(int(c), size) for c in labels])
    images = images + rng.normal(0, 0.15, images.shape).astype(np.float32)
    shift = rng.integers(-2, 3, size=(len(labels), 2))
    images = np.stack([np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(images, shift)])
    images = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8)
    split = np.array(["train", "train", "train", "test", "val"] * (len(labels) // 5 + 1))[: len(labels)]
    return images, labels, split


def write_toy_run(run_dir, kind: str = "follows", size: int = 32, latent_dim: int = 8,
                  classes=TOY_CLASSES, copies=None):
    """Write a run folder whose generator.keras `follows` its label, `mislabels` (draws the next class's
    picture), `ignores` its label, or `copies` the given uint8 images (one per class, z has no effect:
    perfect memorisation and mode collapse)."""
    import keras

    n = len(classes)
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    patterns = np.stack([toy_pattern(c, size).ravel() for c in range(n)])
    if kind in ("follows", "mislabels"):
        table = patterns if kind == "follows" else np.roll(patterns, -1, axis=0)
        drawn = keras.layers.Embedding(n, size * size, weights=[table])(label)
        noise = keras.layers.Dense(size * size, kernel_initializer=keras.initializers.RandomNormal(0, 0.1, seed=1))(z)
        flat = keras.layers.Add()([drawn, noise])
    elif kind == "ignores":
        unused = keras.layers.Embedding(n, size * size, embeddings_initializer="zeros")(label)
        pick = keras.layers.Dense(n, activation="softmax",
                                  kernel_initializer=keras.initializers.RandomNormal(0, 5.0, seed=2))(z)
        drawn = keras.layers.Dense(size * size, use_bias=False,
                                   kernel_initializer=keras.initializers.Constant(patterns))(pick)
        flat = keras.layers.Add()([drawn, unused])
    elif kind == "copies":
        pictures = np.asarray(copies, np.float32).reshape(n, -1) / 127.5 - 1.0
        drawn = keras.layers.Embedding(n, size * size, weights=[pictures])(label)
        silent = keras.layers.Dense(size * size, kernel_initializer="zeros")(z)
        flat = keras.layers.Add()([drawn, silent])
    else:
        raise ValueError(kind)
    image = keras.layers.Reshape((size, size, 1))(flat)
    if kind != "copies":
        image = keras.layers.Activation("tanh")(keras.layers.Rescaling(1.5)(image))
    model = keras.Model([z, label], image)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "generator.keras")
    config = {"arch": f"toy-{kind}", "size": size, "latent_dim": latent_dim, "classes": list(classes), "seed": 0}
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return write_toy_run(tmp_path_factory.mktemp("run") / "run")


def test_an_image_is_the_same_whether_drawn_in_a_batch_or_alone(toy_run):
    from core.export.generator import load_generator

    generator = load_generator(toy_run, batch_size=16)
    labels = np.arange(40) % 3
    seeds = np.arange(1000, 1040)
    batch = generator.generate(labels, seeds)
    assert batch.shape == (40, 32, 32) and batch.dtype == np.uint8
    for i in (0, 17, 39):
        alone = generator.generate([labels[i]], [seeds[i]])
        np.testing.assert_array_equal(alone[0], batch[i])


def test_different_seeds_give_different_images_of_the_same_class(toy_run):
    from core.export.generator import load_generator

    images = load_generator(toy_run).generate([1, 1], [1, 2])
    assert np.abs(images[0].astype(int) - images[1]).mean() > 1


def test_latent_vector_depends_only_on_its_seed():
    from core.export.generator import latent_vector

    np.testing.assert_array_equal(latent_vector(7, 16), latent_vector(7, 16))
    assert not np.array_equal(latent_vector(7, 16), latent_vector(8, 16))
    assert latent_vector(7, 16).dtype == np.float32


def test_a_file_that_is_not_a_keras_model_gets_a_clear_error(tmp_path):
    from core.export.generator import GeneratorError, load_generator

    (tmp_path / "config.json").write_text(json.dumps({"size": 32, "latent_dim": 8, "classes": ["Mass"]}))
    (tmp_path / "generator.keras").write_bytes(b"this is not a model")
    with pytest.raises(GeneratorError, match="generator.keras"):
        load_generator(tmp_path)


def test_a_keras_model_with_another_signature_is_not_taken_for_a_generator(tmp_path):
    import keras

    from core.export.generator import GeneratorError, load_generator

    inputs = keras.Input((32, 32, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(tmp_path / "generator.keras")
    (tmp_path / "config.json").write_text(json.dumps({"size": 32, "latent_dim": 8, "classes": ["Mass"]}))
    with pytest.raises(GeneratorError, match="not a cxr-workbench generator"):
        load_generator(tmp_path)


def test_a_model_carrying_python_code_is_refused_by_the_safe_loader(tmp_path):
    import keras

    from core.export.generator import GeneratorError, load_generator

    z = keras.Input((8,))
    label = keras.Input((), dtype="int32")
    out = keras.layers.Lambda(lambda t: keras.ops.reshape(t[0][:, :1] * 0, (-1, 1, 1, 1)))([z, label])
    keras.Model([z, label], out).save(tmp_path / "generator.keras")
    (tmp_path / "config.json").write_text(json.dumps({"size": 1, "latent_dim": 8, "classes": ["Mass"]}))
    with pytest.raises(GeneratorError, match="generator.keras"):
        load_generator(tmp_path)


def test_a_folder_without_config_is_not_a_run(tmp_path):
    from core.export.generator import GeneratorError, load_generator

    with pytest.raises(GeneratorError, match="config.json"):
        load_generator(tmp_path)
