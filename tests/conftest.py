"""Shared fixtures: a small synthetic book built once per session from the real params.yaml."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.synthetic import SyntheticBook, simulate_book
from pipelines.params import Params, parse_params

REPO = Path(__file__).resolve().parents[1]


def repo_params_raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def small_params() -> Params:
    raw = repo_params_raw()
    raw["book"]["profile"] = "tiny"
    raw["book"]["profiles"]["tiny"]["n_customers"] = 1500
    raw["generate"]["truth_replicates"] = 2
    return parse_params(raw)


@pytest.fixture(scope="session")
def small_book(small_params: Params) -> SyntheticBook:
    return simulate_book(small_params.synthetic())


@pytest.fixture()
def book_tables(small_book: SyntheticBook) -> dict[str, pd.DataFrame]:
    """A fresh copy of the raw tables that a test may corrupt."""
    return {k: v.copy() for k, v in small_book.tables().items()}


@pytest.fixture(scope="session")
def clean_book(small_params: Params) -> SyntheticBook:
    """A book with no injected dirt: every row must pass the contract."""
    sp = small_params.synthetic().model_copy(update={"dirty_share": 0.0, "truth_replicates": 1, "seed": 7})
    sp = sp.model_copy(update={"size": sp.size.model_copy(update={"n_customers": 400})})
    return simulate_book(sp)
