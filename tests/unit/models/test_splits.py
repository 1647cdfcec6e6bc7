"""``models.splits``: snapshot dates as text, the form the split's roles are written in."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.splits import iso_days

DAYS = [dt.date(2025, 9, 30), dt.date(2024, 12, 31), dt.date(2026, 2, 28)]


@pytest.mark.parametrize("as_type", ["date objects", "datetime64"])
def test_iso_days_is_the_row_by_row_conversion(as_type: str) -> None:
    rng = np.random.default_rng(0)
    dates = pd.Series([DAYS[i] for i in rng.integers(0, len(DAYS), 500)], dtype=object)
    if as_type == "datetime64":
        dates = pd.to_datetime(dates)
    want = pd.to_datetime(dates).dt.date.astype(str)
    got = iso_days(dates)
    assert got.index.equals(dates.index)
    assert got.tolist() == want.tolist()
    assert set(got) == {"2025-09-30", "2024-12-31", "2026-02-28"}
    # what the stages do with it: compare with the split's ISO dates
    assert ((got > "2025-01-31") == (want > "2025-01-31")).all()
