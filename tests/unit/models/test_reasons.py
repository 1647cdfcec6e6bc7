"""Readable reasons (models/reasons.py): the vectorised ranking and rendering against the row-by-row definition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from models import reasons

DICTIONARY: dict[str, dict[str, Any]] = {
    "quotes": {"en": "Quotes in the last 90 days", "zh": "近90天报价次数", "dtype": "int"},
    "premium": {"en": "Premium in force", "zh": "有效保费", "dtype": "float"},
    "agent": {"en": "Has an agent", "zh": "有代理人", "dtype": "bool"},
    "city": {"en": "City tier", "dtype": "category", "values": {"1": {"en": "first", "zh": "一线"}}},
    "code": {"en": "Occupation class", "dtype": "float", "values": {"1.0": {"en": "office", "zh": "办公室"}}},
    "mixed": {"en": "A user's coded column", "dtype": "category", "values": {"1": {"en": "one", "zh": "一"}}},
}


def _row_by_row(contrib: pd.DataFrame, values: pd.DataFrame, k: int, min_abs: float = 1e-6) -> pd.DataFrame:
    """The definition, one row and slot at a time (the implementation before it was vectorised)."""
    c = contrib.to_numpy(float)
    names = list(contrib.columns)
    vals = values[names].to_numpy(object)
    out: dict[str, list[str]] = {f"reason_{side}_{i + 1}": [] for side in ("for", "against") for i in range(k)}
    for r in range(len(c)):
        for side, sign in (("for", 1.0), ("against", -1.0)):
            order = np.argsort(-sign * c[r], kind="stable")[:k]
            for i in range(k):  # more slots than features: the slots past them are empty
                j = order[i] if i < len(order) else 0
                ok = i < len(order) and sign * c[r, j] > min_abs
                out[f"reason_{side}_{i + 1}"].append(reasons.render(names[j], vals[r, j], DICTIONARY) if ok else "")
    return pd.DataFrame(out, index=contrib.index)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8))
def test_top_reasons_equal_the_row_by_row_definition(n: int, seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    index = pd.RangeIndex(100, 100 + n)  # not the default: the result keeps the caller's index
    values = pd.DataFrame({
        "quotes": rng.integers(0, 4, n),
        "premium": np.where(rng.random(n) < 0.2, np.nan, rng.choice([0.0, 1234.5, 99.0], n)),
        "agent": rng.random(n) < 0.5,
        "city": pd.Categorical(rng.choice(["1", "2", None], n)),
        "code": rng.choice([1.0, 2.0, np.nan], n),
        "mixed": pd.Series(rng.choice(np.array([1, 1.0, True, "1", None], dtype=object), n), index=index,
                           dtype=object),
    }, index=index)
    ties = rng.choice([-0.3, -1e-7, 0.0, 1e-7, 0.3, 0.3], (n, values.shape[1]))  # ties, and values under min_abs
    contrib = pd.DataFrame(ties, index=values.index, columns=values.columns)
    got = reasons.top_reasons(contrib, values, DICTIONARY, k=k)
    pd.testing.assert_frame_equal(got, _row_by_row(contrib, values, k), check_dtype=False)
