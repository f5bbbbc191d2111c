"""Worker side of the Evaluate tab: plain Python (no Qt), run in a child process by app/process_job.py.

In a worker thread, TensorFlow's import and the evaluator's training hold the GIL and stall the window
(see app/process_job.py); in a child process they cannot.
"""
from __future__ import annotations


def evaluate_job(job, config, emit=None) -> dict:
    from core.evaluation.evaluate import evaluate
    return evaluate(config, job)


def augment_bench_job(job, config, emit=None) -> dict:
    from core.evaluation.augment_bench import augment_bench
    return augment_bench(config, job)
