"""`main.py index`: the JSON summary, the readable table, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from tests.test_dataset import HEADER, ROW, make_root, write_entry

ROOT = Path(__file__).resolve().parents[1]


def run_index(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["index", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_summary_has_the_promised_keys(tmp_path, capsys):
    code, out, err = run_index(capsys, "--data", str(make_root(tmp_path, lists=True)), "--json")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert {"rows", "patients", "images_found", "images_missing", "boxes", "labels", "problems",
            "splits"} <= set(summary)
    assert (summary["rows"], summary["patients"], summary["images_found"], summary["boxes"]) == (10, 6, 10, 4)
    assert summary["labels"]["Infiltration"] == 3 and len(summary["labels"]) == 15
    assert summary["splits"]["test"] == 3
    assert summary["problems"] == ["Data_Entry_2017.csv: 1 row with Patient Age over 100, up to 414 (line 6); kept"]


def test_plain_output_is_an_aligned_table(tmp_path, capsys):
    code, out, _ = run_index(capsys, "--data", str(make_root(tmp_path)))
    assert code == 0
    lines = out.splitlines()
    assert "rows                    10" in lines
    assert "Pleural_Thickening        1" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("label "))
    label_lines = lines[header: header + 16]
    assert label_lines[0].split() == ["label", "images"]
    assert len({len(line) for line in label_lines}) == 1
    assert "problems: 1" in lines


def test_demo_dataset_summary(demo_root, capsys):
    code, out, _ = run_index(capsys, "--data", str(demo_root), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["images_missing"] == 0 and summary["problems"] == []


def bad_input_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    missing_csv = tmp_path / "missing_csv"
    missing_csv.mkdir()
    missing_columns = write_entry(tmp_path / "missing_columns", [ROW], header=HEADER.replace("Patient Age,", ""))
    wrong_fields = write_entry(tmp_path / "wrong_fields", ["a,b,c", "x,y"])
    evil = write_entry(tmp_path / "evil", ["../evil.png,Mass,0,2,58,M,PA,1,1,1,1"])
    empty = write_entry(tmp_path / "empty", [])
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "Data_Entry_2017.csv").write_bytes(b"\xff\xfe\x00bad")
    return {
        "missing CSV": (missing_csv, "no Data_Entry file"),
        "missing columns": (missing_columns, "missing required column(s): Patient Age"),
        "wrong field counts": (wrong_fields, "all 2 rows have the wrong number of fields (expected 11; lines 2, 3)"),
        "../evil.png only": (evil, "no usable image rows"),
        "empty dataset": (empty, "no image rows (empty dataset)"),
        "not UTF-8": (unreadable, "not UTF-8"),
    }


@pytest.mark.parametrize("case", ["missing CSV", "missing columns", "wrong field counts", "../evil.png only",
                                  "empty dataset", "not UTF-8"])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, case):
    root, message = bad_input_cases(tmp_path)[case]
    code, out, err = run_index(capsys, "--data", str(root), "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert "Data_Entry" in err or str(root) in err


def test_evil_names_are_reported_not_opened(tmp_path, capsys):
    root = write_entry(tmp_path / "nih", [ROW, "../evil.png,Mass,0,2,58,M,PA,1,1,1,1"])
    code, out, _ = run_index(capsys, "--data", str(root), "--json")
    problems = json.loads(out)["problems"]
    assert code == 0 and any("Data_Entry_2017.csv: 1 row" in p and "'..'" in p and "line 3" in p for p in problems)


def test_the_real_entry_point_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "main.py", "index", "--data", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path}: no Data_Entry file (expected one of "
                                                  "Data_Entry_2017_v2020.csv, Data_Entry_2017.csv, optionally .gz)"]
