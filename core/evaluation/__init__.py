"""Evaluation: is a generator good, and do its images help a classifier?

Measures (`measures`), the judge classifier (`classifier`), the real images (`real_data`), the two
tasks `evaluate.evaluate(EvaluateConfig, job)` and `augment_bench.augment_bench(AugmentBenchConfig, job)`,
the verdict in words (`verdict`), how synthetic images are drawn (`recipe`), and the rendering
(`plots`: matplotlib figures, `report`: RUN/evaluation/report.html).
"""
