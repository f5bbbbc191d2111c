"""Training presets: what a clinician-researcher picks instead of hyperparameters.

A preset is a time budget plus the few settings that matter at that budget; everything else keeps the
TrainConfig defaults. The budget, not a step count, ends the run (`TrainConfig.minutes`), so a preset
takes the same wall time on any machine and a faster machine simply trains more steps in it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from core.gan.config import TrainConfig

UNCAPPED_STEPS = 1_000_000   # with a time budget the budget ends the run, not the step count


@dataclass(frozen=True)
class Preset:
    name: str
    minutes: float
    description: str
    settings: dict = field(default_factory=dict)


PRESETS: tuple[Preset, ...] = (
    Preset("Quick look", 5, "64 px; enough to see whether the model picks up your classes."),
    Preset("Standard", 10, "64 px; images for augmenting a classifier: check the verdict in Evaluate first."),
    # Mode seeking at 4, not 2: at 128 px weight 2 left the images less varied than real ones (within-class
    # MS-SSIM 0.556 against 0.490 after 30 minutes); 4 matched them (0.492) and drew 97% of the images in
    # their class (every class >= 80%) (bench/quality.py --size 128 --minutes 30).
    Preset("Best quality", 30, "128 px; finer findings and more varied images, three times the time.",
           {"size": 128, "diversity_weight": 4.0}),
)


def preset_named(name: str) -> Preset:
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise KeyError(name)


def apply_preset(config: TrainConfig, preset: Preset, minutes: float | None = None) -> TrainConfig:
    """`config` with the preset's settings and time budget (or `minutes` when the user changed it)."""
    return replace(config, **preset.settings, minutes=float(preset.minutes if minutes is None else minutes),
                   steps=UNCAPPED_STEPS, epochs=0)


def estimated_steps(minutes: float, images_per_s: float | None, batch: int) -> int | None:
    """Steps a budget buys at a measured speed (None when the speed was never measured here)."""
    if not images_per_s or images_per_s <= 0:
        return None
    return int(minutes * 60 * images_per_s / batch)
