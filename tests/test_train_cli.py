"""`main.py train` end to end on the phantom dataset: prepare into the run, train, resume, clear errors."""
from __future__ import annotations

import json

from cli.main import main
from core.gan.runs import read_metrics

TINY = ["--size", "32", "--batch", "8", "--guide-steps", "4", "--channels", "8", "--latent-dim", "16", "--log-every", "1"]


def test_train_from_a_dataset_folder_then_resume(demo_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(demo_root), "--run", str(run), "--steps", "2", "--json", *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and not summary["stopped"]
    assert (run / "cache" / "cache.json").exists() and (run / "generator.keras").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == str(demo_root) and len(config["classes"]) == 7

    assert main(["train", "--run", str(run), "--resume", "--steps", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert [row["step"] for row in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]


def test_missing_cache_is_one_line_error(tmp_path, capsys):
    code = main(["train", "--cache", str(tmp_path / "nope"), "--run", str(tmp_path / "run"), "--steps", "1", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "Traceback" not in err


def test_resume_without_a_run_is_one_line_error(tmp_path, capsys):
    code = main(["train", "--run", str(tmp_path / "run"), "--resume", "--steps", "1"])
    assert code == 2 and "config.json" in capsys.readouterr().err
