"""`TrainConfig`: everything that defines a training run, one dataclass for the CLI, the GUI form and tests.

Each field carries `metadata={"help": ...}` (and `choices` where the value is one of a few) so the GUI
can build its form from `fields(TrainConfig)`; fields with `metadata["form"] is False` are not options. The config is written to the run folder as
`config.json`; resuming compares the saved config with the new one on the fields that change the
run (`RUN_DEFINING`), so a resumed run continues the same experiment.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.errors import UserError
from core.options import option

ARCHITECTURES = ("sngan", "reference")
SIZES = (32, 64, 128, 256)
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")
XLA_MODES = ("auto", "off", "last_layer", "step", "fft")
AUGMENTATIONS = ("translation", "cutout", "color")

# Fields that may change between a run and its resume (how long, how often, how fast, where from).
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "resume", "threads", "log_every", "sample_every",
                               "checkpoint_every", "cache", "strategy", "xla"})


@dataclass
class TrainConfig:
    run: str = option("", "Run folder: config.json, metrics.jsonl, checkpoints/, samples/, generator.keras.")
    cache: str = option("", "Prepared cache folder (from `prepare`); its 'train' split is used.")
    arch: str = option("sngan", "Architecture: 'sngan' (modern, fast) or 'reference' (the notebook model).",
                   choices=ARCHITECTURES)
    size: int = option(64, "Image side in pixels; must equal the cache's size.", choices=SIZES)
    batch: int = option(64, "Images per step (for 'reference': half real, half fake per D update).")
    steps: int = option(2000, "Training steps; used when epochs is 0.")
    epochs: int = option(0, "Passes over the training images; when > 0 it overrides steps.")
    seed: int = option(0, "Seed for weights, latents, sampling and augmentation: same seed, same run.")
    latent_dim: int = option(100, "Length of the latent vector z.")
    channels: int = option(32, "sngan width: channels of the last generator block (doubles per block).")
    lr_g: float = option(2e-4, "sngan generator learning rate (Adam; 'reference' always uses the notebook's 2e-4).")
    lr_d: float = option(4e-4, "sngan discriminator learning rate (Adam; 'reference' always uses 2e-4).")
    beta_1: float = option(0.0, "Adam beta_1 for sngan ('reference' always uses 0.5).")
    beta_2: float = option(0.99, "Adam beta_2 for sngan ('reference' uses 0.999).")
    ac_weight: float = option(1.0, "sngan: weight of the auxiliary class loss (D on real labels, G on its "
                               "conditioned labels). 0 disables it.")
    r1_gamma: float = option(0.0, "sngan: R1 gradient penalty weight on real images (0 = off).")
    augment: str = option("translation,color", "DiffAugment policies applied to real and fake images "
                                                  "(comma separated; empty = none).")
    ema_decay: float = option(0.999, "Decay of the EMA generator used for samples and export.")
    balanced: bool = option(True, "Sample classes equally often in each batch.")
    precision: str = option("auto", "Compute precision. 'auto': mixed_bfloat16 on CPUs with AMX or AVX512-BF16, "
                                    "mixed_float16 (with loss scaling) on a CUDA GPU, else float32. A precision "
                                    "this hardware cannot run fast falls back to float32 with a notice.",
                        choices=PRECISIONS)
    xla: str = option("auto", "How the step is compiled: 'step' = the whole train step by XLA, 'last_layer' = only "
                          "the generator's output conv by XLA, 'fft' = that conv's weight gradient by FFT "
                          "(both avoid TensorFlow's very slow CPU kernel for the reference's 16x16 conv), "
                          "'off' = plain; 'auto' = fft for reference, off for sngan.",
                  choices=XLA_MODES)
    strategy: str = option("default", "tf.distribute strategy: default, mirrored (all local devices), multiworker.",
                       choices=STRATEGIES)
    threads: int = option(0, "TensorFlow CPU threads (0 = all cores). Only takes effect before TensorFlow "
                         "starts its runtime, i.e. for the first run in a process.")
    log_every: int = option(50, "Append a metrics row every this many steps.")
    sample_every: int = option(0, "Save a sample grid every this many steps (0 = once per epoch).")
    checkpoint_every: int = option(500, "Save a checkpoint every this many steps (and always at the end).")
    resume: bool = option(False, "Continue the run in the run folder from its last checkpoint.")
    # --- generator quality (h-gan) ---
    latent_blocks: bool = option(True, "sngan: z and the class embedding modulate the batch norm of every "
                                       "generator block (BigGAN-deep). Off = the model before issue 9: z and "
                                       "the class at the input, a class-only scale and shift per block.")
    lecam_weight: float = option(0.0, "sngan: LeCam regularisation weight (Tseng et al. 2021): pulls D's scores "
                                      "towards running averages of its scores on the other side, which limits "
                                      "D's overfitting on small data. 0 = off.")
    ada_target: float = option(0.0, "sngan: adaptive augmentation (ADA, Karras et al. 2020). Each augmentation "
                                    "policy is applied with a probability p tuned during training so that the "
                                    "share of real images D scores as real stays at this target (0.6 in ADA). "
                                    "0 = apply the policies to every image (DiffAugment).")
    ada_kimg: float = option(20.0, "sngan: ADA speed, in thousands of images for p to go from 0 to 1.")
    cond_start: int = option(0, "sngan: transitional conditioning (Shahbazi et al. 2022): train unconditionally "
                                "for this many steps, then ramp the class in over cond_ramp steps. Needs "
                                "latent_blocks. 0 and 0 = conditional from the start.")
    cond_ramp: int = option(0, "sngan: steps over which the class condition ramps from 0 to full strength.")
    classes: list = field(default_factory=list, metadata={
        "help": "Class names in label order. Filled in from the training data (not a form field); "
                "generator.keras label k means classes[k].", "form": False})

    def validate(self) -> None:
        """Raise UserError naming the option if a value cannot work."""
        if not self.run:
            raise UserError("train: --run (the run folder) is required")
        if self.arch not in ARCHITECTURES:
            raise UserError(f"train: --arch must be one of {', '.join(ARCHITECTURES)}, not {self.arch!r}")
        if self.size not in SIZES:
            raise UserError(f"train: --size must be one of {SIZES}, not {self.size}")
        if self.arch == "reference" and self.size != 128:
            raise UserError("train: the 'reference' architecture is defined for --size 128 only")
        if self.precision not in PRECISIONS:
            raise UserError(f"train: --precision must be one of {', '.join(PRECISIONS)}")
        if self.xla not in XLA_MODES:
            raise UserError(f"train: --xla must be one of {', '.join(XLA_MODES)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"train: --strategy must be one of {', '.join(STRATEGIES)}")
        if self.batch < 2:
            raise UserError(f"train: --batch must be at least 2, not {self.batch}")
        if self.steps < 1 and self.epochs < 1:
            raise UserError("train: give --steps N or --epochs E (at least 1)")
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserError(f"train: {name} must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError("train: ema_decay must be in [0, 1)")
        self.augment_policies()
        if self.lecam_weight < 0:
            raise UserError(f"train: lecam_weight must be >= 0, not {self.lecam_weight}")
        if not 0.0 <= self.ada_target < 1.0:
            raise UserError(f"train: ada_target must be in [0, 1) (0 = off), not {self.ada_target}")
        if self.ada_kimg <= 0:
            raise UserError(f"train: ada_kimg must be > 0, not {self.ada_kimg}")
        if self.cond_start < 0 or self.cond_ramp < 0:
            raise UserError("train: cond_start and cond_ramp must be >= 0")
        if (self.cond_start or self.cond_ramp) and self.arch == "sngan" and not self.latent_blocks:
            raise UserError("train: cond_start/cond_ramp (transitional conditioning) need latent_blocks")

    def xla_mode(self) -> str:
        if self.xla != "auto":
            return self.xla
        return "fft" if self.arch == "reference" else "off"

    def augment_policies(self) -> tuple[str, ...]:
        names = tuple(p.strip() for p in self.augment.split(",") if p.strip())
        unknown = [p for p in names if p not in AUGMENTATIONS]
        if unknown:
            raise UserError(f"train: unknown augmentation {unknown}; choose from {', '.join(AUGMENTATIONS)}")
        return names

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str = "config.json") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown training options {unknown}")
        return cls(**data)

    def save(self, path: Path) -> None:
        from core.atomic import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read the run config ({error})") from error
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a training config")
        return cls.from_json(data, source=str(path))

    def differences(self, other: "TrainConfig") -> list[str]:
        """Run-defining fields whose values differ (what makes a resume a different experiment)."""
        return [f.name for f in fields(self)
                if f.name not in RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)]
