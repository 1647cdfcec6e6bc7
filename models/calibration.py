"""Turn model scores into true probabilities: isotonic, sigmoid (Platt) or none, chosen by Brier score.

A calibrator is a small JSON-able dict, so it is saved natively (no pickles) and applied anywhere:
``{"method": "isotonic", "x": [...], "y": [...]}`` (piecewise-linear through the fitted steps) or
``{"method": "sigmoid", "a": .., "b": ..}`` (``p = 1 / (1 + exp(-(a * logit(score) + b)))``), or
``{"method": "identity"}`` when the model's own probabilities are already the best calibrated (LightGBM's
binary objective often is, and a needless calibrator only adds noise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("identity", "isotonic", "sigmoid")
SIMPLEST_FIRST = ("identity", "sigmoid", "isotonic")  # fewest fitted parameters first
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit(method: str, scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    s, y = np.asarray(scores, float), np.asarray(y, int)
    if method == "identity":
        return {"method": "identity"}
    # scikit-learn here, not with the module: the stages that only apply calibrators would load it for nothing
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "sigmoid":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(s).reshape(-1, 1), y)
        return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    raise ValueError(f"unknown calibration method {method!r}; use one of {METHODS}")


def apply(cal: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, float)
    if cal["method"] == "identity":
        return np.clip(s, 0.0, 1.0)
    if cal["method"] == "isotonic":
        return np.interp(s, np.asarray(cal["x"], float), np.asarray(cal["y"], float))
    if cal["method"] == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(cal["a"] * _logit(s) + cal["b"])))
    raise ValueError(f"unknown calibration method {cal['method']!r}")


def choose(scores: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
           min_relative_gain: float = 0.0) -> tuple[dict[str, Any], dict[str, float]]:
    """Pick the method with the lowest cross-validated Brier score on the calibration snapshot, refit on all of it.

    Cross-validation matters: scored on its own fitting data, the more flexible isotonic fit would
    always look better. Methods are tried simplest first (identity, sigmoid, isotonic); a more flexible
    one replaces the current choice only when it lowers the Brier score by more than
    ``min_relative_gain`` (a share of the current Brier score), so a difference within noise keeps the
    simpler calibrator.
    """
    from sklearn.metrics import brier_score_loss
    from sklearn.model_selection import StratifiedKFold

    s, y = np.asarray(scores, float), np.asarray(y, int)
    k = int(min(folds, max(2, min(y.sum(), len(y) - y.sum()))))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    brier: dict[str, float] = {}
    for m in METHODS:
        pred = np.empty(len(y))
        for tr, te in cv.split(s, y):
            pred[te] = apply(fit(m, s[tr], y[tr]), s[te])
        brier[m] = float(brier_score_loss(y, pred))
    best = SIMPLEST_FIRST[0]
    for m in SIMPLEST_FIRST[1:]:
        if brier[m] < brier[best] * (1.0 - min_relative_gain):
            best = m
    return fit(best, s, y), brier


def cross_calibrated(method: str, scores: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each fold's scores calibrated by ``method`` fitted on the other folds: out-of-fold calibrated probabilities,
    so a cross-fitted model's calibrated test metrics never score a row its calibrator was fitted on."""
    s, y, fold = np.asarray(scores, float), np.asarray(y, int), np.asarray(fold, int)
    out = np.empty(len(s))
    for f in np.unique(fold):
        rest = fold != f
        out[~rest] = apply(fit(method, s[rest], y[rest]), s[~rest])
    return out


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-count bins of predicted probability: mean predicted vs observed rate (calibration curve)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    return [{"bin": i, "predicted": float(p[c].mean()), "observed": float(y[c].mean()), "n": int(len(c))}
            for i, c in enumerate(np.array_split(order, bins)) if len(c)]


def gains(y: np.ndarray, score: np.ndarray, points: int = 20) -> list[dict[str, float]]:
    """Cumulative gains: share of positives captured when contacting the top x% by score."""
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(score, float), kind="stable")
    cum = np.cumsum(y[order]) / max(y.sum(), 1.0)
    out = [{"contacted": 0.0, "captured": 0.0}]
    for i in range(1, points + 1):
        k = int(round(i / points * len(y)))
        out.append({"contacted": i / points, "captured": float(cum[k - 1]) if k else 0.0})
    return out
