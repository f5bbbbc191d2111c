"""Atomic writes: a reader sees the old file or the new one; a failed write leaves no trace."""
from __future__ import annotations

import os

import pytest

from core.atomic import atomic_write_bytes, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "annotations.csv"
    target.write_text("old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.csv"]


def test_text_is_written_with_the_requested_line_ending(tmp_path):
    target = tmp_path / "sub" / "Data_Entry_2017.csv"
    atomic_write_text(target, "a,b\n1,2\n", newline="\r\n")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"
