"""Export labelled synthetic images in the NIH ChestX-ray14 layout, with a manifest that can redo any image.

The folder holds `images/synth_<model hash>_<NNNNNN>.png`, `Data_Entry_2017.csv` and `manifest.json`.
The CSV follows the v2020 release: the exact NIH header, plain integers (age `58`, not `058Y`), no
trailing comma, LF line endings. Per row: Finding Labels = the conditioned class, Follow-up # 0, one
synthetic patient per image with ids from 90,000,000 up (above any real NIH id, 1..30,805), age, sex and
view copied together from a random training image of the same class (so their joint distribution per
class is kept), OriginalImage width/height = the exported size, and pixel spacing = NIH's usual
0.143 mm at 1024 px scaled to that size. Names cannot collide with NIH names (`PPPPPPPP_FFF.png`).

Every PNG carries tEXt chunks saying it is synthetic and which model made it. The export is written to
a hidden temporary folder beside the target and renamed into place at the end: it appears whole or not
at all, also when cancelled or when it fails half way.

How many images (`counts`, `per_class`, or `counts="recommended"`: what won the run's augmentation
bench) and how they are drawn (`recipe`: latent truncation, screening by the judge classifier's
confidence and against near-copies of training images, see `core.evaluation.recipe`) are part of the
config. The manifest records the recipe, what the screening did, the step the generator was trained to
(from the run's checkpoints, not the configured total) and the verdict of the run's latest augmentation
bench. Screening uses the evaluation stage's judge, so this module comes after `core.evaluation` in the
flow (which itself needs only `core.export.generator`).
"""
from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import struct
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import write_error
from core.cleanup import recover_swap
from core.csvsafe import csv_text
from core.errors import UserError
from core.evaluation.recipe import RECIPE_CHOICES, Recipe, recipe_named
from core.export.generator import PRECISIONS, Generator, load_generator, real_cache, trained_step
from core.jobs import Job
from core.labels import canonical_label
from core.locks import hold_lock
from core.options import option

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
CSV_NAME = "Data_Entry_2017.csv"
MANIFEST_NAME = "manifest.json"
IMAGES_DIR = "images"
EXPORT_FORMAT = "cxr-workbench synthetic export"
FIRST_PATIENT_ID = 90_000_000
NIH_SPACING_MM = 0.143
NIH_SIDE_PX = 1024
STAGING = "partial"  # the hidden folder an export is built in: `.OUT.partial-<random>` beside OUT


@dataclass
class ExportConfig:
    run: str = option("", "Run folder holding generator.keras and config.json.")
    out: str = option("", "Export folder to create (new or empty; an earlier export only with force).")
    counts: Any = option("", "Images per class, e.g. 'Mass=200,Nodule=50', or 'recommended': the counts that won "
                             "the run's augmentation bench (without a bench: top the minority classes up to the "
                             "largest class). A dict {class: n} is accepted from code.")
    per_class: int = option(0, "N images of every class of the generator (instead of counts).")
    recipe: str = option("none", "How images are drawn: 'recommended' applies what won the augmentation bench "
                                 "(screening by the judge's confidence in the class, no near-copies of training "
                                 "images, latent truncation); 'none' = plain samples.", choices=RECIPE_CHOICES)
    seed: int = option(0, "Seed for latent seeds and demographics.")
    size: int = option(0, "Exported side in pixels; 0 = the generator's own size.")
    force: bool = option(False, "Replace an earlier export in the output folder.")
    data: str = option("", "Real data (prepared cache or NIH folder) for age/sex/view and the recipe's judge; "
                           "empty = the run's training cache.")
    batch_size: int = option(64, "Images per generator call.")
    threads: int = option(2, "PNG encoders working while the next batch is generated.")
    precision: str = option("saved", "Compute as the model was saved, or in bfloat16 (faster on AMX/AVX512-BF16 "
                                     "CPUs; pixels differ by a few grey levels, recorded in the manifest).",
                            choices=PRECISIONS)


@dataclass
class ExportResult:
    out: Path
    images: int
    seconds: float
    per_class: dict[str, int] = field(default_factory=dict)
    screening: dict = field(default_factory=dict)


@dataclass
class Demographics:
    """Age, sex and view of the training images of each class; `sample` draws whole rows (joint)."""

    age: np.ndarray
    sex: np.ndarray
    view: np.ndarray
    labels: np.ndarray
    max_patient_id: int = 0

    def sample(self, label: int, n: int, rng: np.random.Generator) -> list[tuple[int, str, str]]:
        rows = np.flatnonzero(self.labels == label)
        if rows.size == 0:
            rows = np.arange(len(self.labels))
        picked = rng.choice(rows, size=n, replace=True)
        return [(int(self.age[i]), str(self.sex[i]), str(self.view[i])) for i in picked]

    @classmethod
    def from_cache(cls, path: Path, classes: list[str]) -> "Demographics":
        """Training-split rows of a prepared cache whose age, sex and view are all known."""
        import pandas as pd

        from core.data.cache import PreparedCache

        cache = PreparedCache.open(Path(path))
        meta = cache.meta.reset_index(drop=True)
        name_to_ours = {name: classes.index(name) if name in classes else -1 for name in cache.classes}
        ours = np.array([name_to_ours[cache.classes[int(i)]] for i in np.asarray(cache.labels)])
        age = pd.to_numeric(meta["age"], errors="coerce")
        sex, view = meta["sex"].fillna("").astype(str), meta["view"].fillna("").astype(str)
        known = (np.asarray(cache.split) == "train") & age.notna().to_numpy() & (sex != "").to_numpy() \
            & (view != "").to_numpy()
        if not known.any():
            raise UserError(f"{path}: no training image with age, sex and view to draw demographics from")
        ids = pd.to_numeric(meta["patient_id"], errors="coerce").fillna(0).to_numpy(np.int64)
        return cls(age=age.to_numpy()[known].astype(int), sex=sex.to_numpy()[known],
                   view=view.to_numpy()[known], labels=ours[known],
                   max_patient_id=int(ids.max()) if ids.size else 0)


def png_text_chunk(keyword: str, text: str) -> bytes:
    """One PNG tEXt chunk (Latin-1 keyword, NUL, Latin-1 text) with its CRC."""
    body = keyword.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")
    return struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))


def insert_text_chunks(png: bytes, chunks: dict[str, str]) -> bytes:
    """Insert tEXt chunks right after IHDR (signature 8 bytes + IHDR chunk 25 bytes)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream")
    return png[:33] + b"".join(png_text_chunk(k, v) for k, v in chunks.items()) + png[33:]


def parse_counts(text: str) -> dict[str, int]:
    """`"Mass=200,Nodule=50"` -> {"Mass": 200, "Nodule": 50}; UserError names the bad part."""
    counts: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, number = part.rpartition("=")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise UserError(f"--counts: {part!r} is not CLASS=NUMBER")
        counts[canonical_label(name)] = int(number)
    if not counts:
        raise UserError("--counts: no CLASS=NUMBER given")
    return counts


def software_versions() -> dict[str, str]:
    from importlib import metadata

    import cv2

    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    for name in ("cxr-workbench", "tensorflow", "keras"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def spacing_for(size: int) -> float:
    return round(NIH_SPACING_MM * NIH_SIDE_PX / size, 6)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interpolation = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_CUBIC
    return np.stack([cv2.resize(im, (size, size), interpolation=interpolation) for im in images])


def _encode(image: np.ndarray, chunks: dict[str, str]) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return insert_text_chunks(encoded.tobytes(), chunks)


def _write_png(path: Path, image: np.ndarray, chunks: dict[str, str]) -> None:
    path.write_bytes(_encode(image, chunks))


def read_manifest(folder) -> dict | None:
    """The manifest of a folder written by `export`, or None for any other folder (or an unreadable manifest)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT else None


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(f"{out}: folder is not empty; choose another --out or pass --force to replace it")
        if read_manifest(out) is None:
            raise UserError(f"{out}: not an earlier synthetic export (no {MANIFEST_NAME} of ours); "
                            "refusing to replace it even with --force")


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished temp folder into place; an earlier export is swapped out, then deleted."""
    _check_target(out, force)
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir():
        out.rmdir()
    os.replace(tmp, out)


def _resolve_counts(generator: Generator, counts: dict[str, int]) -> dict[str, int]:
    resolved = {}
    for name, n in counts.items():
        if n < 0:
            raise UserError(f"--counts: negative count for {name}")
        resolved[generator.classes[generator.class_index(canonical_label(name))]] = int(n)
    if sum(resolved.values()) == 0:
        raise UserError("nothing to export: all counts are 0")
    return resolved


def recommended_counts(generator: Generator, data: str = "", job: Job | None = None) -> tuple[dict[str, int], str]:
    """The counts that won the run's augmentation bench, else those that top every minority class up to
    the largest class of the real training split; with a note saying which."""
    from core.evaluation.verdict import latest_verdict

    verdict = latest_verdict(generator.run_dir)
    counts = (verdict.get("recommended") or {}).get("counts") or {}
    if counts and any(counts.values()):
        return {c: int(n) for c, n in counts.items() if n}, f"the augmentation bench of {verdict.get('created')}"
    from core.data.cache import PreparedCache

    cache = PreparedCache.open(real_cache(generator, data, job))
    train = np.asarray(cache.split) == "train"
    names = np.asarray(cache.classes)[np.asarray(cache.labels)[train]]
    have = {c: int((names == c).sum()) for c in generator.classes}
    largest = max(have.values())
    return ({c: largest - n for c, n in have.items() if largest > n},
            "no augmentation bench yet: minority classes topped up to the largest class")


def requested_counts(config: ExportConfig, generator: Generator, job: Job | None = None) -> tuple[dict[str, int], str]:
    """The per-class counts the config asks for (`per_class`, a counts text or dict, or 'recommended')."""
    if config.per_class and config.counts:
        raise UserError("generate: give either --per-class or --counts, not both")
    if config.per_class:
        if config.per_class < 1:
            raise UserError("--per-class must be at least 1")
        return {name: config.per_class for name in generator.classes}, "per class"
    if isinstance(config.counts, dict):
        return _resolve_counts(generator, config.counts), "as given"
    if str(config.counts).strip() == "recommended":
        counts, note = recommended_counts(generator, config.data, job)
        return _resolve_counts(generator, counts), note
    if not str(config.counts).strip():
        raise UserError("generate: give --per-class N or --counts (e.g. \"Mass=200,Nodule=50\" or recommended)")
    return _resolve_counts(generator, parse_counts(config.counts)), "as given"


def plan_rows(generator: Generator, counts: dict[str, int], seed: int, demographics: Demographics, size: int,
              latent_seeds=None):
    """The export plan: one dict per image (name, class, label, latent seed, CSV fields), in order.
    `latent_seeds` (in the same class order) are those a recipe's screening chose; else drawn here."""
    rng = np.random.default_rng(seed)
    total = sum(counts.values())
    drawn = rng.choice(2 ** 52, size=total, replace=False)
    latent_seeds = drawn if latent_seeds is None else np.asarray(latent_seeds)
    first_id = max(FIRST_PATIENT_ID, demographics.max_patient_id + 1)
    rows, k = [], 0
    for name, n in counts.items():
        label = generator.class_index(name)
        for age, sex, view in demographics.sample(label, n, rng):
            rows.append({"image": f"synth_{generator.short_hash}_{k + 1:06d}.png", "class": name, "label": label,
                         "latent_seed": int(latent_seeds[k]), "patient_id": first_id + k,
                         "age": age, "sex": sex, "view": view})
            k += 1
    return rows


def write_csv(path: Path, rows: list[dict], size: int) -> None:
    """The NIH-format CSV; every cell neutralised against spreadsheet formulas (`core.csvsafe`)."""
    spacing = spacing_for(size)
    path.write_text(csv_text(((row["image"], row["class"], 0, row["patient_id"], row["age"], row["sex"], row["view"],
                               size, size, spacing, spacing) for row in rows), header=NIH_HEADER), encoding="utf-8")


def _manifest(generator: Generator, config: ExportConfig, size: int, rows: list[dict], counts: dict[str, int],
              recipe: Recipe, screening: dict, verdict: dict) -> dict:
    return {
        "format": EXPORT_FORMAT, "version": 2,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "model": {"run": str(generator.run_dir.resolve()), "file": generator.model_path.name,
                  "sha256": generator.sha256, "run_config": generator.config,
                  "trained_step": trained_step(generator.run_dir),
                  "configured_steps": generator.config.get("steps")},
        "seed": config.seed, "size": size, "generator_size": generator.size, "batch_size": generator.batch_size,
        "precision": generator.precision,
        "counts": dict(counts),
        "recipe": recipe.to_json(), "screening": screening,
        "augmentation_verdict": {k: v for k, v in verdict.items() if k != "recommended"},
        "latent": "numpy.random.default_rng(latent_seed).standard_normal(latent_dim) * recipe.truncation, float32",
        "images": [{"image": r["image"], "class": r["class"], "label": r["label"], "latent_seed": r["latent_seed"]}
                   for r in rows],
    }


def _chunks(generator: Generator, row: dict) -> dict[str, str]:
    return {"Description": "SYNTHETIC chest X-ray made by a generative model (cxr-workbench); not a real patient.",
            "Source": f"cxr-workbench generator sha256:{generator.sha256} run:{generator.run_dir.name} "
                      f"class:{row['class']} latent_seed:{row['latent_seed']}"}


def _generate_into(folder: Path, generator: Generator, rows: list[dict], size: int, threads: int, job: Job,
                   truncation: float = 1.0) -> None:
    """Generate batch by batch while a thread pool encodes and writes the previous batches' PNGs."""
    total, done = len(rows), 0
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        try:
            batches = generator.iter_batches([r["label"] for r in rows], [r["latent_seed"] for r in rows], truncation)
            for start, images in zip(range(0, total, generator.batch_size), batches):
                job.check()
                for row, image in zip(rows[start:], _resize(images, size)):
                    pending.append(pool.submit(_write_png, folder / row["image"], image, _chunks(generator, row)))
                while len(pending) > 2 * generator.batch_size:
                    pending.popleft().result()
                    done += 1
                job.report(done, total, "generating")
            while pending:
                pending.popleft().result()
                done += 1
                job.report(done, total, "writing")
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def screened_seeds(generator: Generator, counts: dict[str, int], config: ExportConfig, recipe: Recipe,
                   job: Job) -> tuple[np.ndarray | None, dict]:
    """Latent seeds that pass the recipe's screening (judge confidence, no near-copies), class by class,
    and what the screening did; (None, {}) when the recipe does not screen."""
    if not recipe.screens:
        return None, {}
    from core.evaluation.classifier import ClassifierConfig, Embedder, cached_classifier
    from core.evaluation.real_data import open_real_data
    from core.evaluation.recipe import Screen, draw

    real = open_real_data(real_cache(generator, config.data, job), generator.classes, generator.size)
    real.require_training_and_test()
    train_x, train_y = real.part("train")
    judge, _ = cached_classifier(generator.run_dir / "evaluation", train_x, train_y, generator.classes,
                                 ClassifierConfig(), job)
    screen = Screen(Embedder(judge), train_x, real.held_out()[0])
    wanted = {generator.class_index(name): n for name, n in counts.items()}
    drawn = draw(generator, wanted, config.seed, recipe, screen, job)
    return drawn.seeds, {"copy_threshold": round(screen.copy_threshold, 4), "per_class": drawn.stats}


def export(config: ExportConfig, job: Job | None = None, demographics: Demographics | None = None,
           generator: Generator | None = None) -> ExportResult:
    """Write the export described by `config`; on cancel or error nothing appears at `config.out`."""
    job = job or Job()
    started = time.monotonic()
    if not config.out:
        raise UserError("generate: --out (the export folder) is required")
    out = Path(config.out)
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: folder does not exist")
    with _holding_target(out, job):
        _check_target(out, config.force)
        return _export_holding(config, out, job, demographics, generator, started)


@contextmanager
def _holding_target(out: Path, job: Job):
    """One export per target (issue 11 #1): the target's OS lock for the whole export. Holding it, finish
    or undo a `--force` swap that a kill cut between its two renames (#4), and remove killed exports'
    unfinished folders (#10), before anything else can stop the export."""
    with ExitStack() as held:
        try:
            held.enter_context(hold_lock(out, "export target"))
            for action in recover_swap(out, (STAGING,), is_complete=lambda folder: read_manifest(folder) is not None):  # its manifest is written last
                job.log(action)
        except OSError as error:
            raise write_error(out, error) from error
        yield


def _export_holding(config: ExportConfig, out: Path, job: Job, demographics: Demographics | None,
                    generator: Generator | None, started: float) -> ExportResult:
    from core.evaluation.verdict import latest_verdict

    recipe = recipe_named(config.recipe)
    generator = generator or load_generator(config.run, batch_size=config.batch_size, precision=config.precision)
    counts, _ = requested_counts(config, generator, job)
    size = config.size or generator.size
    if not 8 <= size <= 4096:
        raise UserError(f"--size must be between 8 and 4096 pixels, not {size}")
    if demographics is None:
        demographics = Demographics.from_cache(real_cache(generator, config.data, job), generator.classes)
    seeds, screening = screened_seeds(generator, counts, config, recipe, job)
    rows = plan_rows(generator, counts, config.seed, demographics, size, seeds)
    tmp = out.parent / f".{out.name}.{STAGING}-{secrets.token_hex(4)}"
    try:
        (tmp / IMAGES_DIR).mkdir(parents=True)
        _generate_into(tmp / IMAGES_DIR, generator, rows, size, config.threads, job, recipe.truncation)
        write_csv(tmp / CSV_NAME, rows, size)
        manifest = _manifest(generator, config, size, rows, counts, recipe, screening,
                             latest_verdict(generator.run_dir))
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        job.check()
        _publish(tmp, out, config.force)
    except OSError as error:  # a full or read-only disk: one line naming the target, nothing left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, error) from error
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out=out, images=len(rows), seconds=time.monotonic() - started, per_class=counts,
                        screening=screening)


def regenerate(export_dir, image_name: str, generator: Generator | None = None) -> np.ndarray:
    """Redraw one exported image from the manifest alone; the model file must be the one recorded."""
    export_dir = Path(export_dir)
    try:
        manifest = json.loads((export_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{export_dir / MANIFEST_NAME}: cannot read the export manifest ({error})") from error
    entry = next((e for e in manifest.get("images", []) if e.get("image") == image_name), None)
    if entry is None:
        raise UserError(f"{export_dir / MANIFEST_NAME}: no image named {image_name!r}")
    precision = manifest.get("precision", "saved")
    generator = generator or load_generator(manifest["model"]["run"], batch_size=manifest["batch_size"],
                                            precision=precision)
    if (generator.batch_size, generator.precision) != (manifest["batch_size"], precision):
        raise ValueError(f"regenerate needs a generator with batch_size={manifest['batch_size']} and "
                         f"precision={precision!r}, as exported")
    if generator.sha256 != manifest["model"]["sha256"]:
        raise UserError(f"{generator.model_path}: not the model this export was made with (sha256 differs)")
    truncation = float((manifest.get("recipe") or {}).get("truncation", 1.0))
    image = generator.generate([entry["label"]], [entry["latent_seed"]], truncation)
    return _resize(image, manifest["size"])[0]
