"""One tree's TreeSHAP leaf by leaf (models/tree_paths.py): against LightGBM per tree, and the leaf table against
Shapley values computed from their definition."""

from __future__ import annotations

import itertools
import math

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import tree_paths as tp
from models.tree_shap import design_matrix
from tests.unit.models.test_tree_shap import _at_thresholds, _frame, _train


@pytest.mark.parametrize("extra", [{}, {"zero_as_missing": True}, {"objective": "regression"},
                                   {"use_missing": False}, {"num_leaves": 63, "min_data_in_leaf": 5}],
                         ids=["nan", "zero-missing", "regression", "no-missing", "deep"])
def test_each_tree_equals_lightgbms_treeshap_of_that_tree(extra: dict[str, object]) -> None:
    X, y = _frame(3000, 11)
    booster = _train(X, y, **extra)
    values = design_matrix(booster, _at_thresholds(booster, X.iloc[:1000]))
    dump = booster.dump_model()["tree_info"]
    for t in range(0, len(dump), 3):
        expected = booster.predict(values, pred_contrib=True, start_iteration=t, num_iteration=1)
        got = tp.shap(tp.parse(dump[t]), values, values.shape[1])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


def test_a_feature_split_twice_on_a_path_is_merged() -> None:
    """Deep trees on few features split on the same feature again along a path: one player, fractions multiplied."""
    X, y = _frame(3000, 12)
    booster = _train(X[["a", "b"]], y, num_leaves=31, min_data_in_leaf=5)
    dump = booster.dump_model()["tree_info"]
    trees = [tp.parse(info) for info in dump]
    assert any(sum(len(s) for s in leaf.sides) > len(leaf.features) for tree in trees for leaf in tree.leaves)
    values = design_matrix(booster, X[["a", "b"]].iloc[:500])
    got = sum(tp.shap(tree, values, 2) for tree in trees)
    np.testing.assert_allclose(got, booster.predict(values, pred_contrib=True), rtol=0, atol=1e-12)


def _shapley(ones: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """The leaf's value function ``f(S) = prod_{S} o * prod_{not S} z`` and Shapley's formula, over every subset."""
    d = len(ones)

    def f(subset: set[int]) -> float:
        return math.prod(float(ones[u]) if u in subset else float(zero[u]) for u in range(d))

    out = np.zeros(d)
    for i in range(d):
        rest = [u for u in range(d) if u != i]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(rest, size):
                out[i] += weight * (f({*subset, i}) - f(set(subset)))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 7).flatmap(lambda d: st.tuples(
    st.lists(st.booleans(), min_size=d, max_size=d),
    st.lists(st.floats(0.01, 1.0), min_size=d, max_size=d))))
def test_the_leaf_table_is_the_shapley_value_of_the_leaf(case: tuple[list[bool], list[float]]) -> None:
    ones, zero = np.array(case[0]), np.array(case[1])
    got = tp._table(ones[None, :], zero[None, :])[0]
    np.testing.assert_allclose(got, _shapley(ones, zero), rtol=1e-12, atol=1e-14)
    # efficiency: the contributions add up to f(all) - f(none)
    assert got.sum() == pytest.approx(float(np.prod(ones)) - float(np.prod(zero)), abs=1e-12)


def test_null_players_pad_a_leaf_without_changing_its_features() -> None:
    rng = np.random.default_rng(0)
    ones = rng.random((50, 5)) < 0.5
    zero = rng.uniform(0.05, 1.0, (50, 5))
    padded = _table_padded(ones, zero, 4)
    np.testing.assert_allclose(padded[:, :5], tp._table(ones, zero), rtol=1e-12, atol=1e-15)
    assert np.all(padded[:, 5:] == 0)


def _table_padded(ones: np.ndarray, zero: np.ndarray, extra: int) -> np.ndarray:
    n = len(ones)
    return tp._table(np.c_[ones, np.ones((n, extra), bool)], np.c_[zero, np.ones((n, extra))])


def test_a_leaf_of_many_features_finds_its_patterns_by_sorting() -> None:
    """Past ``DENSE_BITS`` features the patterns come from ``np.unique``: the same codes as the bits say."""
    d = tp.DENSE_BITS + 2
    leaf = tp.Leaf(1.0, np.arange(d), np.full(d, 0.5), tuple(((u, u % 2 == 0),) for u in range(d)))
    goes = np.random.default_rng(1).random((d, 400)) < 0.9
    inverse, bits = tp._patterns(goes, leaf)
    expected = np.array([[goes[u, r] == (u % 2 == 0) for u in range(d)] for r in range(400)])
    assert np.array_equal(bits[inverse], expected)
    assert len(bits) == len({tuple(row) for row in expected})


def test_a_single_leaf_tree_has_its_value_as_bias_and_no_features() -> None:
    X, y = _frame(300, 13)
    stump = lgb.train({"objective": "binary", "verbosity": -1, "min_data_in_leaf": 10_000, "num_threads": 1},
                      lgb.Dataset(X, y), 1)
    tree = tp.parse(stump.dump_model()["tree_info"][0])
    features, phi = tp.contributions(tree, design_matrix(stump, X.iloc[:5]))
    assert features == [] and phi.shape == (0, 5)
    assert tree.expected == pytest.approx(float(stump.predict(X.iloc[:1], raw_score=True)[0]))
