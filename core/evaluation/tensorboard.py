"""Evaluation and augmentation-bench results in the run's TensorBoard files (RUN/tensorboard), beside the
training curves, at the step the generator was trained to: comparing evaluations of one run over its
checkpoints is then one chart. TensorBoard is a view of the results, which are already in report.json
and augment_bench.json: a failure to write it is logged, never an error.
"""
from __future__ import annotations

from core.jobs import Job


def evaluation_scalars(report: dict) -> dict[str, float]:
    """The headline numbers of an `evaluate` report, flat."""
    values = {"evaluator_accuracy": report["evaluator"]["held_out_accuracy"],
              "conditional_accuracy": report["conditional_accuracy"]["mean"],
              "frechet_distance": report["frechet_distance"]["overall"],
              "frechet_distance_ratio": report["frechet_distance"]["ratio_overall"],
              "ms_ssim_generated": report["ms_ssim"]["generated_mean"],
              "memorised_images": report["memorisation"]["flagged"]}
    for key, value in (report["prdc"]["generated"]["overall"] or {}).items():
        values[f"prdc_{key}"] = value
    return {key: value for key, value in values.items() if isinstance(value, (int, float))}


def bench_scalars(report: dict) -> dict[str, float]:
    """Per arm: balanced accuracy, rare-class recall and the gain over the control; the verdict's gain."""
    values = {}
    for arm, entry in report["arms"].items():
        values[f"bench_balanced_accuracy/{arm}"] = entry["balanced_accuracy"]["mean"]
        values[f"bench_rare_recall/{arm}"] = entry["rare_recall"]["mean"]
        values[f"bench_gain_vs_control/{arm}"] = entry["gain_vs_control"]["balanced_accuracy"]["mean"]
    verdict = report["verdict"]
    values["bench_verdict_gain"] = verdict.get("gain")
    values["bench_verdict_se"] = verdict.get("se")
    return {key: value for key, value in values.items() if isinstance(value, (int, float))}


def log_to_board(run_dir, values: dict, text: dict | None = None, job: Job | None = None) -> bool:
    """Write `values` (and `text`) to RUN/tensorboard at the generator's trained step; False (and a log
    line) when that cannot be done."""
    from core.export.generator import trained_step
    from core.gan.board import log_results

    try:
        log_results(run_dir, trained_step(run_dir), values, text)
        return True
    except Exception as error:  # noqa: BLE001 - a viewer's files must never fail an evaluation
        (job or Job()).log(f"TensorBoard: results not logged ({error})")
        return False
