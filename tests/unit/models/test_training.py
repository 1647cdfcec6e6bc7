"""Models layer: purged out-of-time splits, metric properties, deterministic LightGBM, baselines."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models import baselines, gbm, training
from models.metrics import classification_metrics, expected_calibration_error, gini, lift_capture
from models.splits import SplitError, time_split
from models.training import MinPositives
from tests.conftest import repo_params_raw

H = 90


def _monthly(n: int) -> list[dt.date]:
    return [(pd.Timestamp("2024-01-31") + pd.DateOffset(months=k)).date() for k in range(n)]


def test_time_split_purges_one_horizon_between_roles() -> None:
    dates = _monthly(20)
    s = time_split(dates, H)
    assert s.test == dates[-1]
    gap = dt.timedelta(days=H)
    assert s.calib + gap <= s.test and s.valid + gap <= s.calib
    assert all(d + gap <= s.valid for d in s.train)
    assert len(s.train) >= 3 and {s.role(d) for d in s.train} == {"train"}
    # nothing is used twice
    assert len({*s.train, s.valid, s.calib, s.test}) == len(s.train) + 3


def test_time_split_refuses_short_history() -> None:
    with pytest.raises(SplitError, match="training snapshot"):
        time_split(_monthly(9), H)
    with pytest.raises(SplitError, match="no snapshot"):
        time_split([], H)


def test_metric_properties() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.3, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    calibrated = expected_calibration_error(y, p)
    assert calibrated < 0.005
    assert expected_calibration_error(y, np.clip(p * 1.8, 0, 1)) > 5 * calibrated
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["lift_at_5"] > m["lift_at_20"] > 1 and 0 < m["capture_at_5"] < m["capture_at_20"] < 1
    lift, capture = lift_capture(y, y.astype(float), y.mean())  # a perfect ranking finds every positive
    assert capture == pytest.approx(1.0) and lift == pytest.approx(1 / y.mean())
    v = rng.lognormal(8, 1, 5000)
    assert gini(v, v) == pytest.approx(1.0)
    assert gini(v, -v) < -0.9
    assert abs(gini(v, rng.random(len(v)))) < 0.1


def _toy(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                       "c": rng.choice(["a", "b", "c"], n)})
    logit = 1.5 * df["x"] + np.where(df["c"] == "a", 1.0, -0.5) - 2
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


TOY_DICT = [{"name": "x", "dtype": "float", "role": "feature"}, {"name": "z", "dtype": "float", "role": "feature"},
            {"name": "c", "dtype": "category", "role": "feature"}, {"name": "y", "dtype": "int", "role": "label"}]


def test_design_fixes_categories_at_training() -> None:
    train = _toy()
    spec = gbm.feature_spec(train, TOY_DICT)
    assert spec.categorical == {"c": ["a", "b", "c"]} and spec.numeric == ["x", "z"]
    new = pd.DataFrame({"x": [1.0], "z": ["oops"], "c": ["never seen"]})
    X = gbm.design(new, spec)
    assert list(X.columns) == ["x", "z", "c"]
    assert np.isnan(X["z"].iloc[0]) and pd.isna(X["c"].iloc[0]) and list(X["c"].cat.categories) == ["a", "b", "c"]
    with pytest.raises(KeyError, match="missing"):
        gbm.design(new.drop(columns=["x"]), spec)
    assert gbm.FeatureSpec.from_dict(spec.to_dict()) == spec


def test_lightgbm_is_deterministic_and_learns(small_params) -> None:
    p = small_params.train.gbm.model_copy(update={"max_rounds": 200, "early_stopping_rounds": 20,
                                                  "min_child_samples": 20})
    tr, va, te = _toy(seed=1), _toy(seed=2), _toy(seed=3)
    spec = gbm.feature_spec(tr, TOY_DICT)
    fits = [gbm.fit(gbm.design(tr, spec), tr["y"].to_numpy(), gbm.design(va, spec), va["y"].to_numpy(), p, "binary")
            for _ in range(2)]
    assert fits[0].model_to_string() == fits[1].model_to_string()
    auc = roc_auc_score(te["y"], gbm.predict(fits[0], gbm.design(te, spec)))
    assert auc > 0.8
    imp = gbm.mean_abs_contributions(fits[0], gbm.design(te, spec))
    assert imp.index[0] in {"x", "c"} and imp["z"] < imp["x"]


def test_rule_quadrant() -> None:
    r = baselines.RuleParams(ability_income_rank_min=2, ability_premium_min=10_000, willingness_answered_90d_min=1,
                             willingness_tenure_months_min=36)
    base = {"income_rank": 0, "premium_inforce": 0.0, "n_reached_90d": 0, "n_interested_90d": 0, "n_quote_90d": 0,
            "n_appointment_90d": 0, "n_purchase_90d": 0, "tenure_months": 0, "n_inforce": 0, "n_contacts_90d": 0}
    rows = pd.DataFrame([
        base | {"income_rank": 3, "n_reached_90d": 1},        # rich and warm
        base | {"premium_inforce": 20_000.0},                 # rich (premium capacity), cold
        base | {"tenure_months": 48, "n_inforce": 1},         # long relationship, modest means
        base,                                                 # neither
    ])
    assert baselines.quadrant(rows, r).tolist() == ["pamper", "cultivate", "maintain", "develop"]
    s = baselines.rule_purchase_score(rows, r)
    assert list(np.argsort(-s)) == [0, 1, 2, 3]


def test_truth_metrics() -> None:
    from models.metrics import calibration_error_vs_truth, expected_auc

    rng = np.random.default_rng(5)
    p = rng.beta(1, 15, 50_000)
    ceiling = expected_auc(p, p)
    noisy = p * np.exp(rng.normal(0, 1.0, len(p)))
    assert 0.5 < expected_auc(p, noisy) < ceiling  # the truth is the best ranking one can expect
    assert expected_auc(p, rng.random(len(p))) == pytest.approx(0.5, abs=0.01)
    # the expected AUC is what sampled outcomes give on average
    draws = [roc_auc_score(rng.random(len(p)) < p, noisy) for _ in range(5)]
    assert np.mean(draws) == pytest.approx(expected_auc(p, noisy), abs=0.01)
    assert calibration_error_vs_truth(p, p) == pytest.approx(0.0)
    assert calibration_error_vs_truth(p, 2 * p) == pytest.approx(p.mean(), rel=0.05)


def test_unused_features_are_the_ones_no_tree_splits_on() -> None:
    from models import gbm as g

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"signal": rng.normal(size=2000), "constant": 1.0, "noise": rng.normal(size=2000)})
    y = (X["signal"] + 0.3 * rng.normal(size=2000) > 0).astype(float).to_numpy()
    p = g.GBMParams(learning_rate=0.1, num_leaves=4, min_child_samples=20, feature_fraction=1.0, bagging_fraction=1.0,
                    bagging_freq=0, lambda_l2=0.0, max_rounds=30, early_stopping_rounds=10, seed=1, num_threads=1)
    booster = g.fit_rounds(X, y, p, "binary", 30)
    assert "constant" in g.unused_features(booster) and "signal" not in g.unused_features(booster)


def test_check_enough_data_names_the_model_role_and_counts() -> None:
    y = {"train": np.array([1.0] * 50 + [0.0] * 500), "valid": np.array([1.0] * 40), "calib": np.ones(40),
         "test": np.array([1.0] * 5 + [0.0] * 100)}
    with pytest.raises(training.NotEnoughData, match="not enough data") as e:
        training.check_enough_data("purchase", "purchase_h", y, "binary", MinPositives(train=200, holdout=30))
    msg = str(e.value)
    assert "purchase model" in msg and "train: 50 (need 200)" in msg and "test: 5 (need 30)" in msg
    assert "valid" not in msg.split("Counts")[0]  # only the short roles are listed as the reason
    training.check_enough_data("purchase", "purchase_h", y, "binary", MinPositives(train=50, holdout=5))


def _frame(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x * 1.5 - 2)))).astype(float)
    df = pd.DataFrame({"x": x, "noise": rng.normal(size=n), "income_band": rng.choice(["a", "b"], n),
                       "purchase_h": y, "role": rng.choice(list(training.ROLES), n, p=[.55, .15, .15, .15])})
    dictionary = [{"name": c, "role": "feature", "dtype": "float"} for c in ("x", "noise")]
    return df, dictionary


def test_fit_out_of_time_reports_against_its_baselines_and_never_touches_its_inputs() -> None:
    df, dictionary = _frame()
    before = df.copy()
    spec = gbm.feature_spec(df[df["role"] == "train"], dictionary)
    tp = training.TrainParams.model_validate(repo_params_raw()["train"])
    fitted = training.fit_out_of_time("purchase", "purchase_h", df, spec, tp, None, {"test": "t"})
    pd.testing.assert_frame_equal(df, before)
    e = fitted.entry
    assert e["rows"] == {r: int((df["role"] == r).sum()) for r in training.ROLES}
    assert "rules" not in e and e["beats_logistic"] == (e["lightgbm"]["roc_auc"] > e["logistic"]["roc_auc"])
    assert e["lightgbm"]["roc_auc"] > 0.7 and fitted.meta["split"] == {"test": "t"}
    assert list(fitted.importance)[0] == "x" and fitted.tuning is None
    p = training.predict_raw(fitted, df[df["role"] == "test"], spec)
    assert p.shape == ((df["role"] == "test").sum(),) and ((p > 0) & (p < 1)).all()
    with pytest.raises(training.NotEnoughData, match="no calib rows"):
        training.fit_out_of_time("purchase", "purchase_h", df[df["role"] != "calib"], spec, tp, None, {})


@pytest.mark.parametrize("n, k, seed", [(10, 3, 0), (1000, 200, 42), (5000, 5000, 7)])
def test_the_logistic_sample_draws_the_rows_dataframe_sample_would(n: int, k: int, seed: int) -> None:
    """``_baselines`` samples positions of the training design instead of a full-width copy of the training rows
    (the stage's memory peak); the rows, so the baseline and train.json, must be the ones ``DataFrame.sample``
    drew from that copy."""
    frame = pd.DataFrame({"a": np.arange(n) * 3, "b": np.arange(n) % 7}, index=np.arange(n) * 2 + 5)
    drawn = frame.sample(k, random_state=seed)
    pos = pd.RangeIndex(n).to_series().sample(k, random_state=seed).to_numpy()
    assert frame.iloc[pos].equals(drawn)
