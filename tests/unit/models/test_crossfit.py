"""Cross-fitting small files (models/crossfit.py) and cross-calibration: properties, not golden numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake.tabular import crossfit_folds
from models import calibration, crossfit, gbm
from models.metrics import classification_metrics

PARAMS = gbm.GBMParams(learning_rate=0.1, num_leaves=7, min_child_samples=20, feature_fraction=1.0,
                       bagging_fraction=1.0, bagging_freq=0, lambda_l2=1.0, max_rounds=300, early_stopping_rounds=20,
                       seed=3, num_threads=1)
SPEC = gbm.FeatureSpec(["x1", "x2", "noise"], {"kind": ["a", "b", "c"]})


def _rows(n: int, signal: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "noise": rng.normal(size=n),
                       "kind": rng.choice(["a", "b", "c"], n)})
    logit = -1.0 + signal * (df["x1"] - 0.5 * df["x2"] + 0.8 * (df["kind"] == "a"))
    return df, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)


def _folds(y: np.ndarray, k: int = 5) -> np.ndarray:
    return crossfit_folds(pd.Series([f"r{i}" for i in range(len(y))]), y, k, seed=1)


def test_every_row_gets_an_out_of_fold_score_and_the_final_model_uses_the_median_rounds() -> None:
    df, y = _rows(3000, signal=1.5)
    cf = crossfit.cross_fit(df, y, _folds(y), SPEC, PARAMS, lr_max_rows=10_000)
    assert np.isfinite(cf.oof).all() and np.isfinite(cf.oof_logistic).all() and len(cf.fold_rounds) == 5
    assert cf.booster.num_trees() == cf.rounds == int(np.median(cf.fold_rounds))
    assert classification_metrics(y, cf.oof)["roc_auc"] > 0.75
    assert classification_metrics(y, cf.oof_logistic)["roc_auc"] > 0.75


def test_out_of_fold_scores_never_see_their_own_labels() -> None:
    # pure noise: the final model fits its training rows, but out-of-fold scores stay at chance
    df, y = _rows(2000, signal=0.0, seed=4)
    cf = crossfit.cross_fit(df, y, _folds(y), SPEC, PARAMS.model_copy(update={"early_stopping_rounds": 100}),
                            lr_max_rows=10_000)
    in_sample = gbm.predict(cf.booster, gbm.design(df, SPEC))
    assert abs(classification_metrics(y, cf.oof)["roc_auc"] - 0.5) < 0.05
    assert classification_metrics(y, in_sample)["roc_auc"] > classification_metrics(y, cf.oof)["roc_auc"] + 0.03


def test_each_fold_is_scored_only_by_a_model_that_did_not_train_on_it() -> None:
    df, y = _rows(2000, signal=1.0, seed=5)
    fold = _folds(y)
    base = crossfit.cross_fit(df, y, fold, SPEC, PARAMS, lr_max_rows=10_000)
    flipped = y.copy()
    flipped[fold == 2] = 1 - flipped[fold == 2]  # fold 2 scores fold 2 and stops early on fold 3: train = 0, 1, 4
    other = crossfit.cross_fit(df, flipped, fold, SPEC, PARAMS, lr_max_rows=10_000)
    assert np.allclose(base.oof[fold == 2], other.oof[fold == 2])
    assert not np.allclose(base.oof[fold == 0], other.oof[fold == 0])  # fold 0 trained on fold 2's labels


def test_cross_fitting_needs_three_folds() -> None:
    df, y = _rows(300, signal=1.0)
    with pytest.raises(ValueError, match="k >= 3"):
        crossfit.cross_fit(df, y, np.arange(len(y)) % 2, SPEC, PARAMS, lr_max_rows=10_000)


def test_cross_calibration_calibrates_each_fold_without_its_own_labels() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(0.05, 0.6, 4000)
    y = (rng.random(4000) < np.clip(s * 1.4, 0, 1)).astype(int)  # scores that understate the rate
    fold = np.arange(4000) % 5
    p = calibration.cross_calibrated("sigmoid", s, y, fold)
    assert abs(p.mean() - y.mean()) < 0.02 and abs(s.mean() - y.mean()) > 0.1
    y2 = y.copy()
    y2[fold == 1] = 1 - y2[fold == 1]
    q = calibration.cross_calibrated("sigmoid", s, y2, fold)
    assert np.allclose(p[fold == 1], q[fold == 1]) and not np.allclose(p[fold == 0], q[fold == 0])
