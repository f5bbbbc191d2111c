"""`TrainConfig`: everything that defines a training run, one dataclass for the CLI, the GUI form and tests.

Each field carries `metadata={"help": ...}` (and `choices` where the value is one of a few) so the GUI
can build its form from `fields(TrainConfig)`; fields with `metadata["form"] is False` are not options. The config is written to the run folder as
`config.json`; resuming compares the saved config with the new one on the fields that change the
run (`RUN_DEFINING`), so a resumed run continues the same experiment.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from core.errors import UserError
from core.labels import DEFAULT_CLASSES, LABEL_INDEX, canonical_label
from core.options import default_of, option

ARCHITECTURES = ("sngan", "reference")
SIZES = (32, 64, 128, 256)
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")
XLA_MODES = ("auto", "off", "last_layer", "step", "fft")
AUGMENTATIONS = ("translation", "cutout", "color")
GUIDE_FOLDS = (0, 1, 2, 4)   # 0 = automatic (TrainConfig.guide_fold_factor)

# Fields that may change between a run and its resume: how long, how often, how fast, where from (the run
# folder and the data may have moved), and the learning rates (a run that diverged resumes with lower ones).
RESUMABLE_CHANGES = frozenset({"run", "data", "steps", "epochs", "minutes", "resume", "threads", "log_every",
                               "sample_every", "checkpoint_every", "strategy", "xla", "lr_g", "lr_d",
                               "lr_decay_start", "lr_decay_steps"})
MAX_THREADS = 256
# Inclusive ranges of the numeric options (anything outside is refused by name before training starts).
_RANGES = {"batch": (2, 65536), "steps": (0, 10**9), "epochs": (0, 10**6), "minutes": (0.0, 10**6),
           "seed": (0, 2**63 - 1), "latent_dim": (1, 4096), "channels": (1, 1024), "threads": (0, MAX_THREADS),
           "log_every": (1, 10**9), "sample_every": (0, 10**9), "checkpoint_every": (1, 10**9),
           "lr_g": (1e-8, 1.0), "lr_d": (1e-8, 1.0), "lr_decay_start": (0, 10**9), "lr_decay_steps": (0, 10**9),
           "ac_weight": (0.0, 100.0), "r1_gamma": (0.0, 1e4),
           "guide_weight": (0.0, 100.0), "guide_steps": (0, 10**6),
           "diversity_weight": (0.0, 100.0)}


@dataclass
class TrainConfig:
    run: str = option("", "Run folder: config.json, metrics.jsonl, checkpoints/, samples/, generator.keras.", label='Run folder')
    data: str = option("", "Training images: an NIH dataset folder (prepared into RUN/cache at --size with "
                           "--classes) or a prepared cache folder (from `prepare`); its 'train' split is used.", label='Training data')
    arch: str = option("sngan", "Architecture: 'sngan' (modern, fast) or 'reference' (the notebook model).",
                   choices=ARCHITECTURES, label='Model')
    size: int = option(64, "Image side in pixels; must equal the cache's size.", choices=SIZES, label='Image size (px)')
    batch: int = option(32, "Images per step (for 'reference': half real, half fake per D update).", label='Images per step')
    steps: int = option(2000, "Training steps; used when epochs is 0.", label='Maximum steps')
    epochs: int = option(0, "Passes over the training images; when > 0 it overrides steps.", label='Epochs (instead of steps)')
    minutes: float = option(0.0, "Time budget in minutes: training stops cleanly (checkpoint and generator saved) "
                                 "when it is used up or the steps are done, whichever comes first; 0 = no limit.", label='Time budget (minutes)')
    seed: int = option(0, "Seed for weights, latents, sampling and augmentation: same seed, same run.", label='Random seed')
    latent_dim: int = option(100, "Length of the latent vector z.", label='Latent length')
    channels: int = option(16, "sngan width: channels of the last generator block (doubles per block). Cost grows "
                               "with its square: 16 trains about 2.5x as many images per minute as 32 and learned "
                               "the classes at least as fast per step (bench/quality.py).", label='Network width')
    lr_g: float = option(6e-4, "sngan generator learning rate (Adam; 'reference' always uses the notebook's 2e-4). "
                               "3x the usual 2e-4: with the class guide, a 10-minute run then drew its classes 89% "
                               "of the time instead of 41% (bench/quality.py).", label='Generator learning rate')
    lr_d: float = option(1.2e-3, "sngan discriminator learning rate (Adam; 'reference' always uses 2e-4); "
                                 "twice the generator's.", label='Discriminator learning rate')
    lr_decay_start: int = option(2500, "sngan: step from which both learning rates fall linearly, over "
                                       "lr_decay_steps, to a tenth, where they stay, so a longer run or a faster "
                                       "machine does not drift away from what it learned. With constant rates two "
                                       "of three 10-minute runs at 64 px (~5,050 steps) lost Mass (24% and 62% "
                                       "read as Mass, from 92-94% at 5 minutes); with the fall they kept it (88% "
                                       "and 100%) (bench/quality.py --data-seed 7).",
                                 label='Learning rates fall from step')
    lr_decay_steps: int = option(2500, "sngan: steps over which the learning rates fall to a tenth (0 = constant "
                                       "learning rates).", label='Learning rates fall over (steps)')
    beta_1: float = option(0.0, "Adam beta_1 for sngan ('reference' always uses 0.5).", label='Adam beta 1')
    beta_2: float = option(0.99, "Adam beta_2 for sngan ('reference' uses 0.999).", label='Adam beta 2')
    ac_weight: float = option(2.0, "sngan: weight of the auxiliary class loss (D on real labels, G on its "
                               "conditioned labels). 0 disables it.", label='Class loss weight')
    r1_gamma: float = option(0.0, "sngan: R1 gradient penalty weight on real images (0 = off).", label='Gradient penalty (R1)')
    augment: str = option("translation,color", "DiffAugment policies applied to real and fake images "
                                                  "(comma separated; empty = none).", label='Augmentations')
    ema_decay: float = option(0.999, "Decay of the EMA generator used for samples and export.", label='Generator averaging (EMA)')
    balanced: bool = option(True, "Sample classes equally often in each batch.", label='Balance the classes')
    precision: str = option("auto", "Compute precision. 'auto': mixed_float16 (with loss scaling) on a CUDA GPU, "
                                    "mixed_bfloat16 on CPUs with AMX or AVX512-BF16 (15% more steps in ten "
                                    "minutes at the same class fidelity and variety), else float32. "
                                    "A precision this hardware cannot run fast falls back to float32 with a notice.",
                        choices=PRECISIONS, label='Number precision')
    xla: str = option("auto", "How the step is compiled: 'step' = the whole train step by XLA, 'last_layer' = only "
                          "the generator's output conv by XLA, 'fft' = that conv's weight gradient by FFT "
                          "(both avoid TensorFlow's very slow CPU kernel for the reference's 16x16 conv), "
                          "'off' = plain; 'auto' = fft for reference, off for sngan.",
                  choices=XLA_MODES, label='Compilation')
    strategy: str = option("default", "tf.distribute strategy: default, mirrored (all local devices), multiworker.",
                       choices=STRATEGIES, label='Devices')
    threads: int = option(0, "TensorFlow CPU threads (0 = all cores). Only takes effect before TensorFlow "
                         "starts its runtime, i.e. for the first run in a process.", label='CPU threads (0 = all)')
    log_every: int = option(50, "Append a metrics row every this many steps.", label='Plot every (steps)')
    sample_every: int = option(0, "Save a sample grid every this many steps (0 = once per epoch).", label='Samples every (steps)')
    checkpoint_every: int = option(500, "Save a checkpoint every this many steps (and always at the end).", label='Checkpoint every (steps)')
    resume: bool = option(False, "Continue the run in the run folder from its last checkpoint.", label='Resume')
    # --- generator quality (h-gan) ---
    latent_blocks: bool = option(True, "sngan: z and the class embedding modulate the batch norm of every "
                                       "generator block (BigGAN-deep). Off = the model before issue 9: z and "
                                       "the class at the input, a class-only scale and shift per block.",
                                 label='Latent in every block')
    lecam_weight: float = option(0.0, "sngan: LeCam regularisation weight (Tseng et al. 2021): pulls D's scores "
                                      "towards running averages of its scores on the other side, which limits "
                                      "D's overfitting on small data. 0 = off.", label='LeCam weight')
    ada_target: float = option(0.0, "sngan: adaptive augmentation (ADA, Karras et al. 2020). Each augmentation "
                                    "policy is applied with a probability p tuned during training so that the "
                                    "share of real images D scores as real stays at this target (0.6 in ADA). "
                                    "0 = apply the policies to every image (DiffAugment).",
                               label='Adaptive augmentation target')
    ada_kimg: float = option(20.0, "sngan: ADA speed, in thousands of images for p to go from 0 to 1.",
                             label='Adaptive augmentation speed (kimg)')
    cond_start: int = option(0, "sngan: transitional conditioning (Shahbazi et al. 2022): train unconditionally "
                                "for this many steps, then ramp the class in over cond_ramp steps. Needs "
                                "latent_blocks. 0 and 0 = conditional from the start.",
                             label='Unconditional steps first')
    cond_ramp: int = option(0, "sngan: steps over which the class condition ramps from 0 to full strength.",
                            label='Class ramp (steps)')
    guide_weight: float = option(1.0, "sngan: weight of the class guide's loss for the generator. The guide is a "
                                      "small classifier of your training images, trained before the GAN and "
                                      "alongside it; it learns small findings far faster than the "
                                      "discriminator's class head (core/gan/guide.py). 0 = no guide.",
                                 label='Class guide weight')
    guide_steps: int = option(2000, "sngan: steps the class guide learns your images alone before the GAN starts "
                                    "(about 1/20 of a GAN step each; counted in the time budget).",
                              label='Class guide warm-up (steps)')
    guide_fakes: bool = option(True, "sngan: the class guide also learns the generator's images, as one extra "
                                     "'generated' class, so the generator cannot please it with marks that no "
                                     "real image has: a 10-minute run then drew its classes 90% of the time "
                                     "instead of 73% (bench/quality.py).", label='Class guide sees generated images')
    guide_fold: int = option(0, "sngan: the class guide's first layer reads blocks this many pixels wide as one, "
                                "so it costs what the guide of an image this many times smaller costs while "
                                "still seeing every pixel. 0 = automatic: 2 at 128 px (170 instead of 132 "
                                "images/s; 98.6% of the Best quality preset's images in their class, every "
                                "class >= 94%: bench/quality.py --size 128), 4 at 256 px, 1 below.",
                             choices=GUIDE_FOLDS, choice_labels={0: "automatic"}, label='Class guide pixel folding')
    diversity_weight: float = option(2.0, "sngan: mode seeking (MSGAN, Mao et al. 2019): the generator is "
                                          "penalised when two latents give nearly the same image of a class. "
                                          "2 kept the class fidelity of weight 1 and varied more (within-class "
                                          "MS-SSIM 0.69 instead of 0.77); 4 varied as much as real images (0.60 "
                                          "against 0.57) at the same overall fidelity, but its augmentation gain, "
                                          "as large on average, was less consistent (bench/augment.py). "
                                          "0 = off.", label='Diversity weight')
    classes: list = option(list(DEFAULT_CLASSES), "Classes to learn, in label order (generator.keras label k "
                                                   "means classes[k]); each training image carries exactly one.",
                           form=False, label='Classes')

    def validate(self, source: str = "train") -> None:
        """Raise UserError naming the option if a value has the wrong type or cannot work."""
        self._check_types(source)
        if not self.run:
            raise UserError(f"{source}: --run (the run folder) is required")
        if self.arch not in ARCHITECTURES:
            raise UserError(f"{source}: --arch must be one of {', '.join(ARCHITECTURES)}, not {self.arch!r}")
        if self.size not in SIZES:
            raise UserError(f"{source}: --size must be one of {SIZES}, not {self.size}")
        if self.arch == "reference" and self.size != 128:
            raise UserError(f"{source}: the 'reference' architecture is defined for --size 128 only")
        if self.precision not in PRECISIONS:
            raise UserError(f"{source}: --precision must be one of {', '.join(PRECISIONS)}")
        if self.xla not in XLA_MODES:
            raise UserError(f"{source}: --xla must be one of {', '.join(XLA_MODES)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"{source}: --strategy must be one of {', '.join(STRATEGIES)}")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UserError(f"{source}: --{name.replace('_', '-')} must be between {low:g} and {high:g}, "
                                f"not {value!r}")
        if self.steps < 1 and self.epochs < 1:
            raise UserError(f"{source}: give --steps N or --epochs E (at least 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"{source}: --ema-decay must be in [0, 1)")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"{source}: --{name.replace('_', '-')} must be in [0, 1)")
        self.class_names(source)
        self.augment_policies()
        if self.lecam_weight < 0:
            raise UserError(f"{source}: --lecam-weight must be >= 0, not {self.lecam_weight}")
        if not 0.0 <= self.ada_target < 1.0:
            raise UserError(f"{source}: --ada-target must be in [0, 1) (0 = off), not {self.ada_target}")
        if self.ada_kimg <= 0:
            raise UserError(f"{source}: --ada-kimg must be > 0, not {self.ada_kimg}")
        if self.cond_start < 0 or self.cond_ramp < 0:
            raise UserError(f"{source}: --cond-start and --cond-ramp must be >= 0")
        if self.guide_fold not in GUIDE_FOLDS:
            raise UserError(f"{source}: --guide-fold must be one of {', '.join(map(str, GUIDE_FOLDS))} "
                            f"(0 = automatic), not {self.guide_fold}")
        if self.size // self.guide_fold_factor() < 16:
            raise UserError(f"{source}: --guide-fold {self.guide_fold} is too coarse for {self.size} px images "
                            f"(the guide needs at least 16 px after folding)")
        if (self.cond_start or self.cond_ramp) and self.arch == "sngan" and not self.latent_blocks:
            raise UserError(f"{source}: --cond-start/--cond-ramp (transitional conditioning) need --latent-blocks")

    def _check_types(self, source: str) -> None:
        """Every field has the type of its default (an int is accepted for a float)."""
        for f in fields(self):
            value, kind = getattr(self, f.name), type(default_of(f))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
                continue
            if kind is list:
                ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok:
                wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
                          list: "a list of names"}.get(kind, kind.__name__)
                raise UserError(f"{source}: {f.name} must be {wanted}, not {value!r}")
            if kind is float and not math.isfinite(value):
                raise UserError(f"{source}: {f.name} must be a finite number, not {value!r}")

    def class_names(self, source: str = "train") -> list[str]:
        """The classes in canonical spelling; UserError for unknown, repeated or too few names."""
        names = [canonical_label(name) for name in self.classes]
        unknown = [name for name in names if name not in LABEL_INDEX]
        if unknown:
            raise UserError(f"{source}: --classes: unknown label(s) {', '.join(unknown)}")
        if len(set(names)) != len(names):
            raise UserError(f"{source}: --classes: a class is named twice")
        if len(names) < 2:
            raise UserError(f"{source}: --classes: a conditional GAN needs at least 2 classes")
        return names

    def xla_mode(self) -> str:
        if self.xla != "auto":
            return self.xla
        return "fft" if self.arch == "reference" else "off"

    def guide_fold_factor(self) -> int:
        """The class guide's pixel folding: guide_fold, or for 0 the size over 64 (at least 1)."""
        return self.guide_fold or max(1, self.size // 64)

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
        """A config from untrusted JSON: unknown fields, wrong types and impossible values are refused by name."""
        data = dict(data)
        if "cache" in data:   # runs made before `data` replaced `cache`
            legacy = data.pop("cache")
            data.setdefault("data", legacy)
        for name in ("guide_weight", "diversity_weight"):   # runs made before these options had neither
            data.setdefault(name, 0.0)
        data.setdefault("guide_fakes", False)   # nor this one
        data.setdefault("lr_decay_steps", 0)    # and learning rates that never fell
        data.setdefault("guide_fold", 1)        # and a guide that read every pixel on its own
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown training options {unknown}")
        config = cls(**data)
        config._check_types(source)
        return config

    def save(self, path: Path) -> None:
        from core.atomic import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
            raise UserError(f"{path}: cannot read the run config ({reason})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a training config")
        config = cls.from_json(data, source=str(path))
        config.validate(source=str(path))
        return config

    def differences(self, other: "TrainConfig") -> list[str]:
        """Run-defining fields whose values differ (what makes a resume a different experiment)."""
        return [f.name for f in fields(self)
                if f.name not in RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)]
