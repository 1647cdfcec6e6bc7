"""``models.metrics``: the rank correlation truth_check and the plan evaluation report."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.metrics import spearman


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 3000), seed=st.integers(0, 2**32 - 1), decimals=st.sampled_from([None, 0, 1]),
       noise=st.floats(0.0, 5.0))
def test_spearman_is_invariant_to_monotone_transforms_and_symmetric(n: int, seed: int, decimals: int | None,
                                                                    noise: float) -> None:
    """A rank correlation: in [-1, 1], symmetric, unchanged by a strictly increasing transform of either input,
    and negated by a decreasing one (ties included, from rounding)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = a + noise * rng.normal(size=n)
    a = a if decimals is None else np.round(a, decimals)
    rho = spearman(a, b)
    if np.isnan(rho):
        assert np.ptp(a) == 0
        return
    assert -1.0 <= rho <= 1.0
    assert spearman(b, a) == pytest.approx(rho, abs=1e-12)
    assert spearman(np.exp(a), b ** 3) == pytest.approx(rho, abs=1e-12)
    assert spearman(-a, b) == pytest.approx(-rho, abs=1e-12)


@pytest.mark.parametrize("a, b", [([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]),
                                  ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]), ([1.0], [2.0])])
def test_spearman_is_undefined_for_a_constant_or_missing_input(a: list[float], b: list[float]) -> None:
    assert np.isnan(spearman(np.array(a), np.array(b)))


def test_spearman_of_a_reversed_order_is_minus_one() -> None:
    x = np.arange(50.0)
    assert spearman(x, x[::-1] ** 3) == pytest.approx(-1.0)
