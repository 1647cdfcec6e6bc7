"""``models.metrics``: the rank correlation and the expected AUC truth_check and the plan evaluation report."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from models.metrics import expected_auc, spearman


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


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 3000), seed=st.integers(0, 2**32 - 1), decimals=st.sampled_from([None, 1, 2, 3]),
       noise=st.floats(0.0, 3.0))
def test_expected_auc_is_scikit_learns_weighted_auc_of_the_doubled_rows(n: int, seed: int, decimals: int | None,
                                                                         noise: float) -> None:
    """Each row a positive with weight p and a negative with weight 1 - p; ties (rounded scores) count a half."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 5.0, n)
    score = p + noise * rng.normal(size=n) * p.std()
    score = score if decimals is None else np.round(score, decimals)
    want = roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[score, score], sample_weight=np.r_[p, 1 - p])
    assert expected_auc(p, score) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_expected_auc_of_the_truth_itself_is_the_best_ranking_and_a_constant_score_is_a_coin() -> None:
    p = np.random.default_rng(1).beta(0.5, 5.0, 2000)
    assert expected_auc(p, p) > expected_auc(p, p + np.random.default_rng(2).normal(0, 0.05, 2000))
    assert expected_auc(p, np.zeros(2000)) == 0.5
