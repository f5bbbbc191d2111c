"""The real images a generator is compared with: a prepared cache's images of the generator's classes.

`open_real_data` checks what would make every later number meaningless and says so in one line:
a class of the generator that the data does not have, images of another size than the generator's,
and (for per-class scores) a test split with too few images of a class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError

MIN_TEST_PER_CLASS = 10  # below this a per-class recall moves in steps of more than 0.1


@dataclass
class RealData:
    """Real images at the generator's size, with class indices in the generator's class order.

    `names` and `patient_ids` (one per image, may be empty for arrays made in tests) let a report say
    which training image a generated one resembles and whose it is."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: list[str]
    source: str = "arrays"
    names: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    patient_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, object))

    def rows(self, *names: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.split, names))

    def part(self, *names: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows(*names)
        return np.asarray(self.images[rows]), self.labels[rows]

    def held_out_split(self) -> str:
        """'test', or 'val' when the data has no test images."""
        return "test" if len(self.rows("test")) else "val"

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        return self.part(self.held_out_split())

    def identity(self, split: str, index: int) -> tuple[str, str]:
        """(file name, patient id) of the `index`-th image of `split`; ("", "") when unknown."""
        row = self.rows(split)[index]
        name = str(self.names[row]) if len(self.names) else ""
        patient = str(self.patient_ids[row]) if len(self.patient_ids) else ""
        return name, patient

    def counts(self, split: str) -> dict[str, int]:
        labels = self.labels[self.rows(split)]
        return {name: int((labels == i).sum()) for i, name in enumerate(self.classes)}

    def require_training_and_test(self, min_test_per_class: int = 0) -> None:
        """UserError unless every class has training images and `min_test_per_class` held-out ones."""
        train, held = self.counts("train"), self.counts(self.held_out_split())
        empty = [c for c, n in train.items() if n == 0]
        if empty:
            raise UserError(f"{self.source}: no training images of {', '.join(empty)}")
        if sum(held.values()) == 0:
            raise UserError(f"{self.source}: no test (or val) images to score on")
        few = [f"{c} {n}" for c, n in held.items() if n < min_test_per_class]
        if few:
            raise UserError(f"{self.source}: the test split has fewer than {min_test_per_class} images of "
                            f"{', '.join(few)}; per-class scores would be noise. Use data with a larger test "
                            "split (e.g. demo-data --proportions nih)")


def open_real_data(path: Path, classes: list[str], size: int) -> RealData:
    """The prepared cache's images of the generator's classes, in the generator's class order."""
    from core.data.cache import PreparedCache

    cache = PreparedCache.open(Path(path))
    missing = [c for c in classes if c not in cache.classes]
    if missing:
        raise UserError(f"{path}: the data has no class {', '.join(missing)}, which the generator makes "
                        f"(the data has {', '.join(cache.classes)})")
    if cache.size != size:
        raise UserError(f"{path}: its images are {cache.size} px but the generator makes {size} px; "
                        f"give a cache prepared at {size} px or the dataset folder")
    ours = np.array([classes.index(c) if c in classes else -1 for c in cache.classes])[np.asarray(cache.labels)]
    rows = np.flatnonzero(ours >= 0)
    meta = cache.meta.reset_index(drop=True)
    return RealData(images=np.asarray(cache.images[rows]), labels=ours[rows].astype(np.int32),
                    split=np.asarray(cache.split)[rows], classes=list(classes), source=str(path),
                    names=meta["image"].to_numpy(object)[rows],
                    patient_ids=meta["patient_id"].astype(str).to_numpy(object)[rows])
