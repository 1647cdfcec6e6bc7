"""``models.metrics``: the rank correlation truth_check and the plan evaluation report."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from models.metrics import spearman


@settings(max_examples=80, deadline=None)
@given(n=st.integers(3, 3000), seed=st.integers(0, 2**32 - 1), decimals_a=st.sampled_from([None, 0, 1, 2]),
       decimals_b=st.sampled_from([None, 1, 3]), noise=st.floats(0.0, 5.0))
def test_spearman_is_scipys_to_the_bit(n: int, seed: int, decimals_a: int | None, decimals_b: int | None,
                                       noise: float) -> None:
    """Ties (rounded values) included: the reports' figures must not move when SciPy's import is dropped."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = a + noise * rng.normal(size=n)
    a = a if decimals_a is None else np.round(a, decimals_a)
    b = b if decimals_b is None else np.round(b, decimals_b)
    expected = spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
    got = spearman(a, b)
    assert got == expected or (np.isnan(got) and np.isnan(expected))


@pytest.mark.parametrize("a, b", [([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]),
                                  ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]), ([1.0], [2.0])])
def test_spearman_is_undefined_for_a_constant_or_missing_input(a: list[float], b: list[float]) -> None:
    assert np.isnan(spearman(np.array(a), np.array(b)))


def test_spearman_of_a_reversed_order_is_minus_one() -> None:
    x = np.arange(50.0)
    assert spearman(x, x[::-1] ** 3) == pytest.approx(-1.0)
