"""Prediction from ``gbm.matrix``: the same predictions as from ``gbm.design``'s frame, whatever the column types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import gbm

SPEC = gbm.FeatureSpec(["x", "count", "flag"], {"band": ["high", "low", "mid"]})
PARAMS = gbm.GBMParams(learning_rate=0.1, num_leaves=8, min_child_samples=10, feature_fraction=1.0,
                       bagging_fraction=1.0, bagging_freq=0, lambda_l2=0.0, max_rounds=40, early_stopping_rounds=10,
                       seed=1, num_threads=1)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    band = rng.choice(["high", "low", "mid"], n).astype(object)
    count = pd.array(rng.integers(0, 5, n), dtype="Int64")
    count[rng.random(n) < 0.1] = pd.NA                           # a nullable integer with gaps
    return pd.DataFrame({"x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)), "count": count,
                         "flag": rng.random(n) < 0.5, "band": band, "unused": "text"})


def test_matrix_predicts_exactly_what_the_design_frame_does() -> None:
    train = _frame(3000, 0)
    y = ((train["band"] == "high") ^ (train["x"].fillna(0) > 0)).to_numpy(float)
    X = gbm.design(train, SPEC)
    booster = gbm.fit(X[:2400], y[:2400], X[2400:], y[2400:], PARAMS, "binary")
    score = _frame(500, 1)
    score.loc[:9, "band"] = "unseen"                             # a category training never saw: missing
    score.loc[10:19, "band"] = None
    m = gbm.matrix(score, SPEC)
    assert m.flags["F_CONTIGUOUS"] and m.dtype == np.float64 and m.shape == (500, 4)
    assert np.isnan(m[:20, 3]).all() and not np.isnan(m[20:, 3]).any()
    want = gbm.predict(booster, gbm.design(score, SPEC))
    assert np.ptp(want) > 0.5  # the model uses the features: equal predictions are not a constant
    np.testing.assert_array_equal(gbm.predict(booster, m), want)
    np.testing.assert_array_equal(gbm.predict_output(booster, SPEC, score, None, None), want)


def test_matrix_names_the_missing_feature_columns() -> None:
    with pytest.raises(KeyError, match="count"):
        gbm.matrix(_frame(5, 0).drop(columns=["count"]), SPEC)


@pytest.mark.parametrize("values", [
    pd.Series(["low", None, "unseen", "high", "low"], dtype="string[pyarrow]"),  # what the feature table holds
    pd.Series(["low", None, "unseen", "high", "low"], dtype=object),
    pd.Series(["mid", 1, "1", np.nan], dtype=object),                          # a number is not its string
    pd.Series(["mid", "low", None], dtype="category"),
    pd.Series([np.nan, np.nan]),
    pd.Series([], dtype=object),
], ids=["arrow", "object", "mixed", "category", "all-missing", "empty"])
def test_categorical_puts_each_row_on_its_training_category_or_missing(values: pd.Series) -> None:
    cats = ["1", "high", "low", "mid"]
    got = gbm._categorical(values, cats)
    assert list(got.categories) == cats
    # the definition, row by row: the training category with the same value, else missing
    want = [v if isinstance(v, str) and v in cats else None for v in values.astype(object)]
    assert [None if pd.isna(v) else v for v in got.astype(object)] == want
