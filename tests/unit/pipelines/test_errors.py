"""The one missing-input check every stage uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.errors import InputError, UserError, require
from tests.conftest import REPO


def test_require_names_the_first_missing_path_and_what_to_run(tmp_path: Path) -> None:
    present, folder = tmp_path / "a.parquet", tmp_path / "scores"
    present.write_bytes(b"x")
    folder.mkdir()
    require([present, folder], "unused")  # files and folders that exist pass
    with pytest.raises(InputError, match=r"b\.parquet not found: run the train stage first \(dvc repro train\)$"):
        require([present, tmp_path / "b.parquet", tmp_path / "c.parquet"],
                "run the train stage first (dvc repro train)")
    assert issubclass(InputError, UserError)  # so every stage turns it into exit 2 and one line


def test_no_stage_hand_rolls_its_own_missing_input_check() -> None:
    """Issue 19: the check was copied a dozen times; a new copy drifts in wording and in what it checks."""
    pattern = re.compile(r'raise InputError\(f"\{\w+\} not found')
    allowed = {"errors.py", "spark_engine.py"}  # the helper itself; a URI on a cluster filesystem Path cannot see
    copies = [p.name for p in (REPO / "pipelines").glob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert copies and set(copies) <= allowed, f"use pipelines.errors.require, not a hand-written check, in {copies}"
