"""How synthetic images are drawn: latent truncation, and screening by the judge and by novelty.

A `Recipe` is the generation side of what the augmentation bench found to work:
- `truncation`: latents are scaled by psi (< 1 draws nearer the generator's typical image: cleaner,
  less varied). The scale is recorded in the export manifest, so any image can be drawn again.
- `min_confidence`: keep an image only when the judge (the evaluator classifier trained on the real
  training split) gives its conditioned class at least this probability: images that do not show
  their label are not shipped with it.
- `reject_copies`: drop images whose copy ratio (distance to the nearest training image over that
  image's distance to its own nearest neighbour, see `measures.memorisation_ratios`) is below the
  near-copy threshold of held-out real images: no near-copy of a patient's image ships.
- `spread`: gather `spread` times the wanted images that pass the screen, then keep the wanted number that
  are most spread out in the judge's feature space (greedy farthest-point order, so any prefix is spread
  too): a generator that repeats itself ships fewer look-alikes, and look-alikes are what a classifier
  learns nothing new from.

Candidates come from a fixed stream of latent seeds per (seed, class), so the same request gives the
same images. When too few candidates pass within `max_tries` per wanted image, the rest are the
best-scoring candidates that are not copies; the stats say how many, so a class the generator rarely
draws clearly shows up instead of silently shrinking the export.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from core.evaluation.measures import memorisation_ratios, pixel_vectors
from core.jobs import Job

MAX_COPY_RATIO = 0.5
CHUNK = 256  # candidates generated and screened at once: bounds the memory and the wait between progress reports
RECIPE_CHOICES = ("recommended", "none")


@dataclass(frozen=True)
class Recipe:
    name: str = "none"
    truncation: float = 1.0
    min_confidence: float = 0.0
    reject_copies: bool = False
    spread: float = 1.0
    max_tries: int = 10

    @property
    def screens(self) -> bool:
        return self.min_confidence > 0 or self.reject_copies

    def to_json(self) -> dict:
        return asdict(self)


# "recommended" = screening by the judge (conditioned class at >= 0.5), no near-copies, and the most spread-out
# half of what passed. Measured with a stand-in generator that draws the wrong finding 40% of the time, on
# `demo-data --proportions nih --difficulty easy` (bench/augment.py screening, 3 seeds, 400 classifier steps):
# the synthetic top-up's gain over the duplicate control went from -0.251 +- 0.073 (plain samples) to +0.004 +-
# 0.007 (screening). With the default generator (10 minutes) on realistic NIH-proportioned phantoms, the same
# seeds, half the top-up synthetic: +0.022 +- 0.045 with screening alone (per seed +0.079, -0.070, +0.058),
# +0.043 +- 0.027 with spread 2 (+0.096, +0.008, +0.025). Truncation stays 1.0: never benched with a trained
# generator.
RECIPES = {
    "none": Recipe("none"),
    "recommended": Recipe("recommended", truncation=1.0, min_confidence=0.5, reject_copies=True, spread=2.0),
}


def recipe_named(name: str) -> Recipe:
    from core.errors import UserError

    if name not in RECIPES:
        raise UserError(f"--recipe: {name!r} is not one of {', '.join(RECIPES)}")
    return RECIPES[name]


def copy_threshold(held_out_ratios: np.ndarray) -> float:
    """Near-copy bar: the 1st percentile of held-out real images' copy ratios (other patients), capped."""
    if len(held_out_ratios) == 0:
        return MAX_COPY_RATIO
    return min(MAX_COPY_RATIO, float(np.percentile(held_out_ratios, 1)))


class Screen:
    """Scores candidate images: the judge's probability of their conditioned class and their copy ratio."""

    def __init__(self, embed, train_images: np.ndarray, held_out_images: np.ndarray):
        self.embed = embed
        self.train_vectors = pixel_vectors(train_images)
        _, _, held_ratio = memorisation_ratios(pixel_vectors(held_out_images), self.train_vectors)
        self.copy_threshold = copy_threshold(held_ratio)

    def score(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The judge's confidence in each image's class, its copy ratio, and its judge features."""
        probs, features = self.embed(images)
        confidence = probs[np.arange(len(labels)), labels]
        _, _, ratio = memorisation_ratios(pixel_vectors(images), self.train_vectors)
        return confidence, ratio, features


def farthest_point_order(features: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Indices of `n` rows chosen greedily, each the farthest (Euclidean) from those already chosen,
    starting at row `first`: the k-center greedy order, whose every prefix covers the set evenly."""
    chosen = [int(first)]
    nearest = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < min(n, len(features)):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[pick], axis=1))
    return np.asarray(chosen, np.int64)


@dataclass
class Drawn:
    """Images drawn for a request, in class order, with their latent seeds and what the screen did."""

    images: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    stats: dict = field(default_factory=dict)


def candidate_seeds(seed: int, label: int, start: int, n: int) -> np.ndarray:
    """Latent seeds start..start+n of the fixed candidate stream of (seed, class)."""
    stream = np.random.default_rng([seed, 3, label]).integers(0, 2 ** 52, size=start + n, dtype=np.int64)
    return stream[start:]


def draw(source, counts: dict[int, int], seed: int, recipe: Recipe, screen: Screen | None = None,
         job: Job | None = None, progress: tuple[int, int] | None = None, classes: list[str] | None = None) -> Drawn:
    """`counts[label]` images of each class from `source` (a Generator or anything with its
    `iter_batches(labels, seeds, truncation)`), following `recipe` (screened when it asks and `screen`
    is given).

    Progress counts candidates tried against each class's cap of tries (`recipe.max_tries` per wanted
    image), within the span `progress` gives the class's wanted images, so a weak generator's ETA is an
    honest upper bound rather than stalled on its few accepted images; a class that fills early jumps to
    its end. Candidates are drawn in chunks of at most `CHUNK` and a stop request is seen between the
    generator's batches."""
    job = job or Job()
    offset, total = progress or (0, sum(counts.values()))
    names = classes or getattr(source, "classes", None) or [str(k) for k in range(max(counts, default=0) + 1)]
    screening = screen is not None and recipe.screens
    images, labels, seeds, stats = [], [], [], {}
    done = 0
    for label, wanted in counts.items():
        if wanted <= 0:
            continue
        kept_x, kept_seed, kept_f = [], [], []   # images that passed, their seeds and judge features
        spare = []   # (confidence, seed, image) of non-copies below the bar
        tried = 0
        cap = recipe.max_tries * wanted if screening else wanted
        gather = int(np.ceil(wanted * max(1.0, recipe.spread))) if screening else wanted
        while len(kept_seed) < gather and tried < cap:
            missing = gather - len(kept_seed)
            n = min(CHUNK, max(64, 2 * missing) if screening else missing)
            batch_seeds = candidate_seeds(seed, label, tried, n)
            batch = np.concatenate(list(_checked(source.iter_batches(np.full(n, label, np.int32), batch_seeds,
                                                                     recipe.truncation), job)))
            tried += n
            job.check()
            if not screening:
                accept = np.ones(n, bool)
                features = np.zeros((n, 0))
            else:
                confidence, ratio, features = screen.score(batch, np.full(n, label))
                novel = ratio >= screen.copy_threshold if recipe.reject_copies else np.ones(n, bool)
                accept = novel & (confidence >= recipe.min_confidence)
                spare += [(c, s, im) for c, s, im, ok, new in zip(confidence, batch_seeds, batch, accept, novel)
                          if new and not ok]
            for image, s, f in zip(batch[accept], batch_seeds[accept], features[accept]):
                if len(kept_seed) < gather:
                    kept_x.append(image)
                    kept_seed.append(s)
                    kept_f.append(f)
            job.report(offset + done + int(wanted * min(1.0, tried / cap)), total,
                       f"drawing {names[label]}: {min(len(kept_seed), wanted)} of {wanted} accepted after {tried} "
                       f"candidates (cap {cap})")
        if len(kept_seed) > wanted:  # spread > 1: the wanted number most spread out, in farthest-point order
            keep = farthest_point_order(np.stack(kept_f), wanted)
            kept_x, kept_seed = [kept_x[i] for i in keep], [kept_seed[i] for i in keep]
        passed = len(kept_seed)
        for _, s, image in sorted(spare, key=lambda item: -item[0])[:wanted - passed]:
            kept_x.append(image)
            kept_seed.append(s)
        if len(kept_seed) < wanted:
            from core.errors import UserError

            raise UserError(f"{names[label]}: the cap of {cap} candidates ({recipe.max_tries} per wanted image) "
                            f"was reached with only {len(kept_seed)} of the {wanted} images asked that are not "
                            f"near-copies of training images; this generator memorises, do not use its images")
        done += wanted
        job.report(offset + done, total, f"drawing {names[label]}: {wanted} of {wanted} images")
        images.append(np.stack(kept_x))
        labels.append(np.full(wanted, label, np.int32))
        seeds.append(np.asarray(kept_seed, np.int64))
        stats[names[label]] = {"wanted": int(wanted), "candidates": int(tried), "passed": int(passed),
                               "below_bar": int(wanted - passed)}
    if not images:
        return Drawn(np.zeros((0, 0, 0), np.uint8), np.zeros(0, np.int32), np.zeros(0, np.int64), stats)
    return Drawn(np.concatenate(images), np.concatenate(labels), np.concatenate(seeds), stats)


def _checked(batches, job: Job):
    """The generator's batches, with a stop request honoured between them (a chunk may be many batches)."""
    for batch in batches:
        job.check()
        yield batch
