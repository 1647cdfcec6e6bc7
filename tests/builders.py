"""Test-data builders shared by unit and end-to-end tests: personal values that pass the detectors, and a small
bank-marketing-like file with its tabular spec."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.intake import personal
from features.intake.tabular import TabularSpec

AS_OF = dt.date(2010, 12, 1)


def tabular_spec(**over: object) -> TabularSpec:
    base: dict[str, object] = {"file": "x.csv", "target": "y", "positive": ["yes"], "negative": ["no"],
                               "drop": ["duration"], "missing": {"pdays": ["999"]}, "time_order": "file",
                               "month_column": "month", "start_year": 2008,
                               "split": {"valid": 0.1, "calib": 0.1, "test": 0.2}}
    return TabularSpec.model_validate(base | over)


def bank_rows(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    months = np.repeat(["nov", "dec", "mar", "apr"], n // 4)  # Nov 2008 .. Apr 2009: the year rolls over
    return pd.DataFrame({"age": rng.integers(18, 80, n).astype(str), "job": rng.choice(["a", "b"], n),
                         "month": months, "pdays": np.where(rng.random(n) < 0.7, "999", "5"),
                         "duration": rng.integers(1, 900, n).astype(str), "phone": "13800000000",
                         "y": rng.choice(["yes", "no"], n)})


def resident_id(rng: np.random.Generator) -> str:
    """A syntactically valid 18-character resident ID number (random region, birth date and sequence)."""
    body = f"{rng.integers(110000, 660000)}{rng.integers(1950, 2005)}{rng.integers(1, 13):02d}" \
           f"{rng.integers(1, 29):02d}{rng.integers(0, 1000):03d}"
    digits = np.array([int(c) for c in body])
    return body + personal.ID_CHECK[int((digits * personal.ID_WEIGHTS).sum() % 11)]


def mobile(rng: np.random.Generator) -> str:
    return f"1{rng.choice([3, 5, 7, 8, 9])}{rng.integers(0, 10**9):09d}"
