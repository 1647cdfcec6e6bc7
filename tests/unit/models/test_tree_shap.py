"""TreeSHAP per tree and pattern of split outcomes (models/tree_shap.py) against LightGBM's ``pred_contrib``."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models import tree_shap as ts


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Numerics with missing values and many exact zeros, a coarse integer, a categorical with missing values."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(2.0, n), "c": rng.integers(0, 6, n).astype(float),
                      "z": np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n))})
    X.loc[rng.random(n) < 0.15, "a"] = np.nan
    X.loc[rng.random(n) < 0.05, "c"] = np.nan
    X["kind"] = pd.Categorical(rng.choice(["x", "y", "z", "w"], n))
    X.loc[rng.random(n) < 0.05, "kind"] = np.nan
    logit = X["a"].fillna(0.5) - np.log1p(X["b"]) + 0.3 * X["c"].fillna(2) + 2 * X["z"].clip(-1, 1) + \
        (X["kind"] == "y") - 1
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy(float)))).astype(int)


def _train(X: pd.DataFrame, y: np.ndarray, **extra: object) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 20, "verbosity": -1, "num_threads": 1,
              "seed": 3, "deterministic": True, "min_data_per_group": 10, "cat_smooth": 1.0, **extra}
    return lgb.train(params, lgb.Dataset(X, y, free_raw_data=False), int(extra.pop("rounds", 40)))  # type: ignore[call-overload]


def _at_thresholds(booster: lgb.Booster, X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with some values set exactly to thresholds the trees test (``value <= threshold`` goes left)."""
    out = X.copy()
    names = booster.feature_name()
    dump = booster.dump_model()["tree_info"]
    stack = [t["tree_structure"] for t in dump[:5]]
    i = 0
    while stack:
        node = stack.pop()
        if "split_index" not in node:
            continue
        if node["decision_type"] == "<=":
            out.iloc[i % len(out), names.index(names[node["split_feature"]])] = float(node["threshold"])
            i += 7
        stack += [node["left_child"], node["right_child"]]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("extra", [{}, {"zero_as_missing": True}, {"objective": "regression"},
                                   {"use_missing": False}], ids=["nan", "zero-missing", "regression", "no-missing"])
def test_equals_lightgbms_treeshap(seed: int, extra: dict[str, object]) -> None:
    X, y = _frame(3000, seed)
    booster = _train(X, y, **extra)
    batch = _at_thresholds(booster, X.iloc[:1500])
    expected = booster.predict(batch, pred_contrib=True)
    got = ts.tree_shap(booster, batch)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), booster.predict(batch, raw_score=True), rtol=0, atol=1e-9)


def test_the_float_matrix_and_the_frame_give_the_same_values() -> None:
    X, y = _frame(2000, 4)
    booster = _train(X, y)
    codes = X["kind"].cat.codes.to_numpy()
    matrix = X.assign(kind=np.where(codes < 0, np.nan, codes)).to_numpy(float)
    assert np.array_equal(ts.tree_shap(booster, matrix), ts.tree_shap(booster, X))


def test_a_category_order_other_than_trainings_is_realigned() -> None:
    X, y = _frame(2000, 5)
    booster = _train(X, y)
    shuffled = X.assign(kind=X["kind"].cat.reorder_categories(["z", "w", "y", "x"]))
    assert np.array_equal(ts.tree_shap(booster, shuffled), ts.tree_shap(booster, X))


def test_best_iteration_and_num_iteration_are_honoured() -> None:
    X, y = _frame(3000, 6)
    train, valid = lgb.Dataset(X.iloc[:2000], y[:2000], free_raw_data=False), lgb.Dataset(X.iloc[2000:], y[2000:])
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1, "seed": 1,
                         "learning_rate": 0.3}, train, 200, valid_sets=[valid],
                        callbacks=[lgb.early_stopping(5, verbose=False)], keep_training_booster=True)
    assert 0 < booster.best_iteration < booster.current_iteration()  # an in-memory model that stopped early
    batch = X.iloc[:500]
    for it in (None, 3, booster.best_iteration):
        np.testing.assert_allclose(ts.tree_shap(booster, batch, it),
                                   booster.predict(batch, pred_contrib=True, num_iteration=it), rtol=0, atol=1e-12)


def test_a_rows_contributions_do_not_depend_on_its_batch() -> None:
    X, y = _frame(3000, 7)
    booster = _train(X, y)
    whole = ts.tree_shap(booster, X)
    order = np.random.default_rng(0).permutation(len(X))
    assert np.array_equal(ts.tree_shap(booster, X.iloc[order]), whole[order])  # bitwise, not just close
    assert np.array_equal(ts.tree_shap(booster, X.iloc[[17]]), whole[[17]])


def test_an_empty_batch_and_a_stump() -> None:
    X, y = _frame(500, 8)
    booster = _train(X, y)
    assert ts.tree_shap(booster, X.iloc[:0]).shape == (0, X.shape[1] + 1)
    stump = lgb.train({"objective": "binary", "verbosity": -1, "min_data_in_leaf": 10_000, "num_threads": 1},
                      lgb.Dataset(X, y), 3)  # no split possible: every tree a single leaf
    np.testing.assert_allclose(ts.tree_shap(stump, X.iloc[:50]), stump.predict(X.iloc[:50], pred_contrib=True),
                               rtol=0, atol=1e-12)


def test_a_multiclass_model_is_explained_by_lightgbm_directly() -> None:
    X, _ = _frame(1500, 9)
    y = np.random.default_rng(1).integers(0, 3, len(X))
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbosity": -1, "num_threads": 1},
                        lgb.Dataset(X, y), 5)
    assert np.array_equal(ts.tree_shap(booster, X.iloc[:100]), booster.predict(X.iloc[:100], pred_contrib=True))
