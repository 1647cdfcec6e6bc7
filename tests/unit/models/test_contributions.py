"""Exact contributions for linear trees (models/contributions.py): properties, not golden numbers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models import contributions as c
from models import crossfit, gbm, reasons, training
from tests.unit.models.test_crossfit import PARAMS, SPEC, _folds, _rows


def _book(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Income-scaled and unit-scaled numerics with missing values, a categorical, an unused column."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "income": rng.normal(5000, 1000, n),
                      "band": rng.integers(0, 4, n).astype(float), "unused": np.zeros(n)})
    X.loc[rng.random(n) < 0.1, "a"] = np.nan
    X.loc[rng.random(n) < 0.05, "income"] = np.nan
    X["kind"] = pd.Categorical(rng.choice(["x", "y", "z"], n))
    logit = X["a"].fillna(0) + ((X["income"].fillna(5000) - 5000) / 1000) ** 2 / 3 + (X["kind"] == "y") - 1
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _train(linear: bool, X: pd.DataFrame, y: np.ndarray, rounds: int = 60) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 40, "verbosity": -1, "num_threads": 1,
              "seed": 1, "deterministic": True, **({"linear_tree": True, "linear_lambda": 1.0} if linear else {})}
    return lgb.train(params, lgb.Dataset(X, y, free_raw_data=False), rounds)


@pytest.fixture(scope="module")
def book() -> tuple[pd.DataFrame, np.ndarray]:
    return _book()


def test_plain_trees_get_lightgbms_own_treeshap(book: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = book
    booster = _train(False, X, y)
    assert not c.is_linear(booster)
    np.testing.assert_allclose(c.contributions(booster, X), booster.predict(X, pred_contrib=True), rtol=0, atol=1e-12)


@pytest.mark.parametrize("centre", ["training mean", "batch mean", "origin"])
def test_linear_tree_contributions_sum_to_the_raw_score_whatever_the_centre(
        book: tuple[pd.DataFrame, np.ndarray], centre: str) -> None:
    X, y = book
    booster = _train(True, X, y)
    with pytest.raises(lgb.basic.LightGBMError, match="linear"):
        booster.predict(X, pred_contrib=True)  # what this module exists for
    m = {"training mean": c.linear_centre(X), "batch mean": None, "origin": dict.fromkeys(X.columns, 0.0)}[centre]
    batch = X.iloc[:500]
    phi = c.contributions(booster, batch, m)
    assert phi.shape == (len(batch), X.shape[1] + 1)
    np.testing.assert_allclose(phi.sum(axis=1), booster.predict(batch, raw_score=True), rtol=0, atol=1e-9)
    assert np.all(phi[:, list(X.columns).index("unused")] == 0)  # a feature no leaf uses explains nothing


def test_a_missing_linear_feature_carries_its_leafs_fallback(book: tuple[pd.DataFrame, np.ndarray]) -> None:
    # LightGBM falls back to a leaf's plain value when one of its linear features is missing: the difference is
    # the missing feature's doing, so it shows up on that feature and the row still sums exactly
    X, y = book
    booster = _train(True, X, y)
    row = X.iloc[[0]].copy()
    row["a"], row["income"] = 0.3, 5200.0
    holed = row.assign(a=np.nan)
    full, missing = c.contributions(booster, row), c.contributions(booster, holed, c.linear_centre(row))
    np.testing.assert_allclose(missing.sum(axis=1), booster.predict(holed, raw_score=True), atol=1e-9)
    assert not np.isclose(full[0, 0], missing[0, 0])


def test_the_model_is_not_changed_by_being_explained(book: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = book
    booster = _train(True, X, y)
    text, before = booster.model_to_string(), booster.predict(X, raw_score=True)
    c.contributions(booster, X.iloc[:100])
    assert booster.model_to_string() == text and np.array_equal(booster.predict(X, raw_score=True), before)


def test_a_saved_and_reloaded_linear_model_explains_the_same(book: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = book
    booster = _train(True, X, y)
    loaded = lgb.Booster(model_str=booster.model_to_string())
    m = c.linear_centre(X)
    np.testing.assert_allclose(c.contributions(loaded, X.iloc[:200], m), c.contributions(booster, X.iloc[:200], m),
                               atol=1e-12)


def test_a_crossfitted_linear_tree_model_keeps_its_centre_and_explains_its_reasons() -> None:
    df, y = _rows(2000, signal=1.5, seed=2)
    df["fold"], df["label"] = _folds(y), y
    tp = training.TrainParams.model_construct(gbm=PARAMS.model_copy(update={"linear_tree": True,
                                                                            "linear_lambda": 1.0}),
                                              lr_max_rows=10_000)
    fitted, oof = training.fit_crossfitted("purchase", "label", df.assign(purchase_h=y), SPEC, tp, {"kind": "folds"})
    assert c.is_linear(fitted.booster) and set(fitted.meta["linear_centre"]) == {"x1", "x2", "noise"}
    assert fitted.meta["params"]["linear_tree"] is True and np.isfinite(oof).all()
    design = gbm.design(df, SPEC)
    contrib = reasons.contributions(fitted.booster, design, fitted.meta["linear_centre"])
    np.testing.assert_allclose(contrib.sum(axis=1) + c.contributions(fitted.booster, design.iloc[:1],
                                                                     fitted.meta["linear_centre"])[0, -1],
                               fitted.booster.predict(design, raw_score=True), atol=1e-9)
    assert fitted.importance["x1"] > fitted.importance["noise"]  # the signal outranks the noise column


def test_plain_models_keep_no_centre() -> None:
    df, y = _rows(1500, signal=1.0, seed=3)
    cf = crossfit.cross_fit(df, y, _folds(y), SPEC, PARAMS, lr_max_rows=10_000)
    assert not c.is_linear(cf.booster)
    assert "linear_tree" not in gbm._lgb_params(PARAMS, "binary")
