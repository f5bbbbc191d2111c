"""The augmentation bench's answer in words: do the synthetic images help, compared with repeating real ones?

The bar is the duplicate control (real images plus copies of real minority images, count-matched):
balancing the classes alone is worth a lot (+0.12 balanced accuracy on NIH-proportioned phantoms), so
synthetic images earn credit only for what they add on top of it. Per seed the same classifier seed
trains every arm, so the gain of an arm is a paired difference; its standard error over seeds decides:

- "helps": the best arm's gain over the control is more than 2 standard errors above 0;
- "no_better": within 2 standard errors of 0 (no better than repeating your real images);
- "hurts": more than 2 standard errors below 0 (even the best way to use them loses).

With one seed there is no standard error, so no evidence either way: the verdict is "no_better" and the
text asks for more seeds. The best arm is the one with the highest mean gain; with several arms the
chance that one clears 2 standard errors by luck grows, so the report shows every arm's gain beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

_SENTENCE = {"helps": "Synthetic images help", "no_better": "Synthetic images are no better than repeating your "
                                                           "real images", "hurts": "Synthetic images hurt"}
VERDICTS = {
    "helps": "helps",
    "no_better": "no better than repeating your real images",
    "hurts": "hurts",
    "not_run": "no augmentation bench has been run",
}
BENCH_FILE = "augment_bench.json"
SE_MULTIPLE = 2.0


def decide(gain: float, se: float | None, seeds: int) -> str:
    """'helps', 'no_better' or 'hurts' for a mean paired gain and its standard error over `seeds` seeds."""
    if se is None or seeds < 2:
        return "no_better"
    if gain - SE_MULTIPLE * se > 0:
        return "helps"
    if gain + SE_MULTIPLE * se < 0:
        return "hurts"
    return "no_better"


def verdict_for(gains: dict[str, dict], seeds: int, metric: str = "balanced_accuracy") -> dict:
    """The verdict of the best arm. `gains`: arm -> {metric: {"mean", "se", "per_seed"}} over the control."""
    if not gains:
        return {"verdict": "not_run", "label": VERDICTS["not_run"]}
    best = max(gains, key=lambda arm: gains[arm][metric]["mean"])
    gain = gains[best][metric]
    key = decide(gain["mean"], gain.get("se"), seeds)
    return {"verdict": key, "label": VERDICTS[key], "best_arm": best, "metric": metric,
            "gain": gain["mean"], "se": gain.get("se"), "per_seed": gain.get("per_seed", []), "seeds": seeds,
            "rule": f"gain over duplicate_control more than {SE_MULTIPLE:g} standard errors from 0"}


def verdict_text(verdict: dict | None) -> str:
    """One sentence for people (CLI, GUI banner, report): the verdict, the best arm and the numbers."""
    if not verdict or verdict.get("verdict") == "not_run":
        return "Synthetic images: not tested yet. Run the augmentation bench to see whether they help."
    gain, se = verdict["gain"], verdict.get("se")
    spread = f" +- {se:.3f} (standard error, {verdict['seeds']} seeds)" if se is not None else \
        f" ({verdict['seeds']} seed: no spread, run more seeds for a verdict)"
    best = "even the best use" if verdict["verdict"] == "hurts" else "the best use"
    return (f"{_SENTENCE[verdict['verdict']]}: {best} ({verdict['best_arm']}) changes balanced accuracy by "
            f"{gain:+.3f}{spread} compared with repeating real minority images.")


def latest_verdict(run_dir) -> dict:
    """The verdict of the run's latest augmentation bench (RUN/evaluation/augment_bench.json), or
    {"verdict": "not_run"} when there is none or it cannot be read."""
    path = Path(run_dir) / "evaluation" / BENCH_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        verdict = dict(report["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"verdict": "not_run", "label": VERDICTS["not_run"]}
    verdict.update(created=report.get("created"), file=str(path), recommended=report.get("recommended"))
    return verdict
