"""Notebooks are stored clean; progress is quiet under CI and loud otherwise (execution is in test_end_to_end)."""

from __future__ import annotations

import logging

import nbformat
import pytest

from pipelines.cli import PROGRESS, progress_logger, setup_logging
from pipelines.errors import InputError
from pipelines.outputs import report
from tests.conftest import REPO

NOTEBOOKS = ("01_explore_book.ipynb", "02_model_review.ipynb", "03_tier_backtest.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_without_outputs_and_use_the_project_functions(name: str) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), f"{name} has outputs"
    assert any("from pipelines import outputs" in c.source for c in code)


def test_progress_is_quiet_under_ci_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("CP_PROGRESS", raising=False)
    setup_logging(verbose=False)
    assert not progress_logger("features").isEnabledFor(logging.INFO)
    assert logging.getLogger("pipelines.features").isEnabledFor(logging.INFO)  # the one-line summary stays
    setup_logging(verbose=True)
    assert progress_logger("features").isEnabledFor(logging.INFO)
    monkeypatch.delenv("CI")
    setup_logging(verbose=False)
    assert logging.getLogger(PROGRESS).isEnabledFor(logging.INFO)


def test_outputs_name_the_stage_to_run(tmp_path) -> None:
    with pytest.raises(InputError, match="dvc repro segment"):
        report("segments", root=tmp_path)
