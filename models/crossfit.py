"""Cross-fitting for small files: every labelled row trains the final model, and every row is scored out of fold.

A one-file source of a few thousand rows cannot spare 45% of them for early stopping, calibration and test
(CoIL 2000: 5,822 rows, 348 buyers). Cross-fitting keeps all of them at work. The rows are split into ``k``
folds; for fold ``i`` a model trains on the other folds but one, stops early on that one (fold ``i + 1``), and
scores fold ``i``, so every row gets an out-of-fold score from a model that never saw it. Those scores give
the test metrics and the calibrator's fitting data; the final model trains on every row for the median of
the folds' early-stopping rounds. The logistic baseline is cross-fitted the same way, so the comparison is
like for like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models import baselines, gbm

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass
class CrossFit:
    booster: lgb.Booster          # the final model, on every row
    oof: np.ndarray               # out-of-fold LightGBM score per row
    oof_logistic: np.ndarray      # out-of-fold logistic-baseline score per row
    fold_rounds: list[int]        # each fold's early-stopping round

    @property
    def rounds(self) -> int:
        return max(int(np.median(self.fold_rounds)), 1)


def fold_masks(fold: np.ndarray, i: int, folds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, early-stopping, scored) rows of fold ``i``: scored = fold i, early stopping = the next fold."""
    scored, stop = fold == i, fold == (i + 1) % folds
    return ~(scored | stop), stop, scored


def cross_fit(frame: pd.DataFrame, y: np.ndarray, fold: np.ndarray, spec: gbm.FeatureSpec, params: gbm.GBMParams,
              lr_max_rows: int) -> CrossFit:
    """Out-of-fold LightGBM and logistic scores for every row of ``frame``, and the final LightGBM on all rows.

    ``fold`` holds each row's fold, 0..k-1 (k >= 3: one fold to score, one to stop early, the rest to train).
    """
    fold = np.asarray(fold, dtype=int)
    folds = int(fold.max()) + 1
    if folds < 3 or len(np.unique(fold)) != folds:
        raise ValueError(f"cross-fitting needs folds 0..k-1 with k >= 3, got {sorted(np.unique(fold))}")
    X = gbm.design(frame, spec)
    oof, oof_lr = np.full(len(y), np.nan), np.full(len(y), np.nan)
    rounds: list[int] = []
    for i in range(folds):
        train, stop, scored = fold_masks(fold, i, folds)
        booster = gbm.fit(X[train], y[train], X[stop], y[stop], params, "binary")
        rounds.append(int(booster.best_iteration or booster.current_iteration()))
        oof[scored] = gbm.predict(booster, X[scored])
        fit_rows = np.flatnonzero(train | stop)
        if len(fit_rows) > lr_max_rows:
            fit_rows = np.sort(np.random.default_rng(params.seed + i).choice(fit_rows, lr_max_rows, replace=False))
        lr = baselines.logistic_baseline(spec, params.seed).fit(
            baselines.lr_frame(X.iloc[fit_rows], spec), y[fit_rows].astype(int))
        oof_lr[scored] = lr.predict_proba(baselines.lr_frame(X[scored], spec))[:, 1]
    result = CrossFit(booster=None, oof=oof, oof_logistic=oof_lr, fold_rounds=rounds)  # type: ignore[arg-type]
    result.booster = gbm.fit_rounds(X, y, params, "binary", result.rounds)
    return result
