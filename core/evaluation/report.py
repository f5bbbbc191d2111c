"""`RUN/evaluation/report.html`: one self-contained page to keep beside a paper or an ethics review.

Built from what `evaluate` (report.json) and `augment-bench` (augment_bench.json) wrote to the same
folder, whichever exist, so each of them updates it. The verdict comes first; then the evaluation and
bench tables, the plots (embedded as base64 PNG: the file needs nothing beside it), the images flagged
as near-copies with the training image and patient they resemble, the run's training config, the data
and the software versions. All text from files is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from core.atomic import atomic_write_text
from core.evaluation.verdict import BENCH_FILE, VERDICTS, verdict_text

REPORT_HTML = "report.html"
EVALUATION_FILE = "report.json"

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.verdict { padding: 0.9em 1.2em; border-radius: 6px; font-size: 1.1em; margin: 1em 0; }
.helps { background: #e3f3e6; border-left: 6px solid #4c9a5a; }
.no_better { background: #f3f0e3; border-left: 6px solid #c9a227; }
.hurts { background: #f7e4e4; border-left: 6px solid #c24b4b; }
.not_run { background: #eeeeee; border-left: 6px solid #8c8c8c; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } .muted { color: #666; font-size: 0.85em; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return _e(value)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(folder: Path, name: str, caption: str) -> str:
    path = folder / name
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def software_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("cxr-workbench", "tensorflow", "keras", "numpy", "matplotlib", "opencv-python-headless"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


_EVALUATION_CAPTIONS = {
    "confusion": "What the evaluator sees in the generated images of each conditioned class (row %).",
    "accuracy": "The evaluator's accuracy on held-out real images beside the conditional accuracy of generated ones.",
    "prdc": "Precision/recall/density/coverage of generated images against training images, beside held-out real "
            "images as the reference a perfect generator would reach.",
    "coverage": "Coverage per class.",
    "diversity": "Within-class similarity (MS-SSIM): generated images far above real ones repeat themselves.",
    "real_vs_synthetic": "Real training images (left) beside generated images (right), per class.",
    "nearest": "Generated images beside their nearest training image, with its file name and patient id.",
}
_BENCH_CAPTIONS = {
    "bench_accuracy": "Balanced accuracy and the recall of the three rarest classes of every arm.",
    "bench_gain": "Gain of every arm over repeating real images (paired per seed, +-2 standard errors).",
    "bench_recall": "Per-class recall of real-only, the duplicate control and the best arm.",
}


def _verdict_section(bench: dict | None) -> str:
    verdict = bench.get("verdict") if bench else None
    key = verdict.get("verdict", "not_run") if verdict else "not_run"
    text = verdict_text(verdict)
    parts = [f'<div class="verdict {key}"><strong>{_e(VERDICTS.get(key, key).capitalize())}.</strong> '
             f"{_e(text)}</div>"]
    if bench:
        parts.append(f"<p><strong>How to use the images:</strong> {_e(bench['recommended']['advice'])}</p>")
        counts = ", ".join(f"{c}={n}" for c, n in bench["recommended"]["counts"].items() if n)
        if counts:
            parts.append(f"<p>Recommended counts (<code>generate --counts recommended</code>): {_e(counts)}</p>")
    return "".join(parts)


def _bench_section(folder: Path, bench: dict) -> str:
    from core.evaluation.augment_bench import report_table

    rec = bench.get("recipe", {})
    parts = ["<h2>Augmentation bench</h2>",
             f"<p>Classifier trained {bench['config']['seeds']} time(s) per arm (one per seed, paired), "
             f"{bench['config']['classifier_steps']} updates each, natural-frequency sampling, light augmentation; "
             f"scored on {bench['test_images']} held-out real images (split by patient). The control repeats real "
             f"minority images as often as the synthetic arm adds images. Synthetic images drawn with the "
             f"'{_e(rec.get('name', '?'))}' recipe (truncation {_e(rec.get('truncation'))}, minimum judge "
             f"confidence {_e(rec.get('min_confidence'))}, near-copies rejected: {_e(rec.get('reject_copies'))}).</p>",
             _table(*report_table(bench)),
             _table(["class", "real training images", "held-out test images"],
                    [[c, bench["train_counts"][c], bench["test_counts"][c]] for c in bench["classes"]])]
    parts += [_image(folder, name, _BENCH_CAPTIONS.get(key, key)) for key, name in bench.get("plots", {}).items()]
    return "".join(parts)


def _evaluation_section(folder: Path, report: dict) -> str:
    from core.evaluation.evaluate import report_table

    memo = report["memorisation"]
    parts = ["<h2>Quality of the generated images</h2>",
             f"<p>{report['n_per_class']} generated images per class against the real training images, judged "
             f"in the feature space of a classifier trained on them (held-out accuracy "
             f"{report['evaluator']['held_out_accuracy']:.3f}). Conditional accuracy "
             f"{_cell(report['conditional_accuracy']['mean'])} (chance {report['conditional_accuracy']['chance']:.3f}); "
             f"Fréchet distance {_cell(report['frechet_distance']['overall'])}, "
             f"{_cell(report['frechet_distance']['ratio_overall'])} times that of held-out real images.</p>",
             _table(*report_table(report))]
    parts += [_image(folder, name, _EVALUATION_CAPTIONS.get(key, key)) for key, name in report.get("plots", {}).items()]
    parts.append(f"<h2>Memorisation</h2><p>{memo['flagged']} generated image(s) "
                 f"({memo['flagged_share'] * 100:.1f}%) are nearer to a training image than "
                 f"{memo['ratio_threshold']:.3f} of its own neighbour spacing (the 1st percentile of other patients' "
                 "images): possible copies, which would re-identify the patient.</p>")
    if memo.get("flagged_images"):
        parts.append(_table(["nearest training image", "patient id", "class", "generated images like it",
                             "lowest copy ratio", "their latent seeds (first 10)"],
                            [[f["nearest_training_image"], f["nearest_patient_id"], f["class"], f["generated_images"],
                              f["min_copy_ratio"], " ".join(map(str, f["latent_seeds"]))]
                             for f in memo["flagged_images"]]))
    return "".join(parts)


def build_report(folder: Path, run_dir=None) -> str:
    folder = Path(folder)
    evaluation, bench = _read(folder / EVALUATION_FILE), _read(folder / BENCH_FILE)
    run = Path(run_dir) if run_dir else folder.parent
    config = _read(run / "config.json") or {}
    title = f"Synthetic images of {run.name}: evaluation report"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
             f"<p class='muted'>Written {datetime.now(timezone.utc).isoformat(timespec='seconds')} by cxr-workbench "
             f"from {_e(folder)}. All images are synthetic or from the data named below.</p>",
             _verdict_section(bench)]
    if bench:
        parts.append(_bench_section(folder, bench))
    if evaluation:
        parts.append(_evaluation_section(folder, evaluation))
    source = (bench or evaluation or {}).get("data", "")
    parts.append(f"<h2>Data</h2><p>Real images: {_e(source)}</p>")
    step = (evaluation or {}).get("trained_step")
    parts.append("<h2>Run</h2>" + (f"<p>Generator trained to step {_e(step)}.</p>" if step is not None else "")
                 + _table(["setting", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v]
                                                 for k, v in config.items()]))
    parts.append("<h2>Software</h2>" + _table(["package", "version"], list(software_versions().items())))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(folder: Path, run_dir=None) -> Path:
    """(Re)write `folder/report.html` from the JSON reports in `folder`; returns its path."""
    path = Path(folder) / REPORT_HTML
    atomic_write_text(path, build_report(folder, run_dir))
    return path
