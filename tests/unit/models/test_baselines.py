"""The logistic baseline's imputer: its fast per-column median is the median SimpleImputer would use."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer

from models import baselines, gbm


def _with_gaps(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.lognormal(0, 1, (401, 6))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 2] = np.nan                  # a column with no values at all
    X[:, 3] = np.round(X[:, 3])       # ties
    X[::2, 4] = np.nan                # an even count of present values: the median averages the middle two
    return X


def test_column_median_imputes_what_sklearns_median_would() -> None:
    for seed in range(3):
        X = _with_gaps(seed)
        ours = SimpleImputer(strategy=baselines.column_median, add_indicator=True, keep_empty_features=True).fit(X)
        theirs = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit(X)
        np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)
        np.testing.assert_array_equal(ours.transform(X), theirs.transform(X))
    assert baselines.column_median(np.array([])) == 0.0


def test_the_logistic_baseline_fits_and_ranks_with_missing_values() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": np.where(rng.random(n) < 0.2, np.nan, x), "noise": rng.normal(size=n),
                       "band": pd.Categorical(rng.choice(["a", "b"], n))})
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)
    spec = gbm.FeatureSpec(["x", "noise"], {"band": ["a", "b"]})
    frame = baselines.lr_frame(gbm.design(df, spec), spec)
    p = baselines.logistic_baseline(spec, seed=0).fit(frame, y).predict_proba(frame)[:, 1]
    present = df["x"].notna().to_numpy()
    assert np.corrcoef(p[present], x[present])[0, 1] > 0.9


def test_the_categoricals_one_hot_encode_as_their_values_would() -> None:
    """The pipeline encodes each categorical's position among the training categories: the same columns as
    one-hot encoding the values as text, a missing or unseen value a row of zeros."""
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(5)
    n = 300
    spec = gbm.FeatureSpec(numeric=["x"], categorical={"city": ["1", "2", "3"], "kind": ["b", "a"]})
    raw = pd.DataFrame({"x": rng.normal(size=n), "city": rng.choice(["1", "2", "3", "9", None], n),
                        "kind": rng.choice(["a", "b", None], n)})
    X = gbm.design(raw, spec)  # "9" was never seen in training: missing
    pipeline = baselines.logistic_baseline(spec, seed=0)
    ours = pipeline.named_steps["pre"].fit_transform(baselines.lr_frame(X, spec))
    text = X[list(spec.categorical)].astype(object).where(X[list(spec.categorical)].notna(), "__missing__")
    theirs = OneHotEncoder(handle_unknown="ignore", categories=list(spec.categorical.values()),
                           sparse_output=False).fit_transform(text)
    np.testing.assert_array_equal(np.asarray(ours)[:, -theirs.shape[1]:], theirs)
    assert (np.asarray(ours)[X["city"].isna().to_numpy(), -5:-2] == 0).all()
