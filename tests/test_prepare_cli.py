"""`main.py prepare`: its JSON answer, and one line plus exit code 2 for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from core.labels import DEFAULT_CLASSES

ROOT = Path(__file__).resolve().parents[1]


def test_json_reports_counts_and_seconds_and_a_rerun_reuses_the_cache(demo_root, tmp_path, capsys):
    code = main(["prepare", "--data", str(demo_root), "--out", str(tmp_path / "c"), "--size", "32", "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0
    assert answer["prepared"] == 84 and answer["failed"] == 0 and answer["seconds"] >= 0
    assert answer["per_class"] == {name: 12 for name in DEFAULT_CLASSES} and answer["reused"] is False
    main(["prepare", "--data", str(demo_root), "--out", str(tmp_path / "c"), "--size", "32", "--json"])
    assert json.loads(capsys.readouterr().out)["reused"] is True


def test_the_table_names_the_cache_and_the_counts(demo_root, tmp_path, capsys):
    assert main(["prepare", "--data", str(demo_root), "--out", str(tmp_path / "c"), "--size", "32",
                 "--classes", "Mass,Nodule"]) == 0
    text = capsys.readouterr().out
    assert f"prepared 24 images in {tmp_path / 'c'}" in text and "Nodule" in text


@pytest.mark.parametrize("extra, message", [
    (["--classes", "Mass,Pneumonitis"], "unknown label(s) Pneumonitis"),
    (["--classes", "Mass,Hernia"], "no images of Hernia"),
    (["--size", "4"], "--size"),
])
def test_bad_options_exit_2_with_one_line_naming_the_problem(demo_root, tmp_path, capsys, extra, message):
    code = main(["prepare", "--data", str(demo_root), "--out", str(tmp_path / "c"), *extra])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1


def test_an_unwritable_out_folder_exits_2(demo_root, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code = main(["prepare", "--data", str(demo_root), "--out", str(blocker / "cache")])
    assert code == 2 and "cannot write there" in capsys.readouterr().err


def test_a_missing_dataset_folder_exits_2(tmp_path, capsys):
    code = main(["prepare", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    assert code == 2 and "nowhere" in capsys.readouterr().err


def test_prepare_never_imports_tensorflow(demo_root, tmp_path):
    code = ("import sys; from cli.main import main; "
            f"code = main(['prepare', '--data', {str(demo_root)!r}, '--out', {str(tmp_path / 'c')!r}, '--size', '16']); "
            "print(code, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["0", "False"]
