"""Mode seeking (TrainConfig.diversity_weight): the pair gap it rewards, and a run that trains with it."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.gan.engine import GanEngine
from core.gan.runs import read_metrics
from core.gan.trainer import train
from tests.test_gan_trainer import synthetic_data, tiny_config


def test_the_pair_gap_is_the_image_difference_over_the_latent_difference():
    z = tf.constant([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 1.0]])          # pairs (0, 2) and (1, 3)
    images = np.zeros((4, 2, 2, 1), np.float32)
    images[2] = 0.5                                                            # pair 0 differs by 0.5
    gaps = GanEngine._pair_gaps(tf.constant(images), z).numpy()
    assert gaps == pytest.approx([0.5 / 1.0, 0.0])   # identical images from two latents: a gap of 0


def test_a_run_with_mode_seeking_trains_reports_its_gap_and_resumes(tmp_path):
    data = synthetic_data()
    train(tiny_config(tmp_path / "run", steps=2, diversity_weight=1.0), data=data)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(row["g_diversity"] > 0 and np.isfinite(row["g_loss"]) for row in rows)
    assert train(tiny_config(tmp_path / "run", steps=3, diversity_weight=1.0, resume=True), data=data).step == 3
