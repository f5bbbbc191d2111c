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
    Preset("Best quality", 30, "128 px; finer findings, three times the time.", {"size": 128}),
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
