"""Evaluation metrics for ranking, probability quality and value. Arrays in, floats out."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-count bins, weighted by bin size."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            err += len(chunk) * abs(y[chunk].mean() - p[chunk].mean())
    return float(err / len(y))


def lift_capture(y: np.ndarray, score: np.ndarray, share: float) -> tuple[float, float]:
    """(lift, capture) of the top ``share`` by score: rate vs base rate, share of all positives found."""
    y = np.asarray(y, float)
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-np.asarray(score, float), kind="stable")[:k]
    base = y.mean()
    rate = y[top].mean()
    return (float(rate / base) if base > 0 else float("nan"),
            float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan"))


def alift(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the cumulative gains curve (share contacted vs share of positives found): 0.5 random, 1 perfect
    ordering of a rare class. Moro et al. (2014) report it beside AUC for telemarketing."""
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(score, float), kind="stable")
    found = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1.0)])
    x = np.linspace(0, 1, len(found))
    return float(np.sum((found[1:] + found[:-1]) / 2 * np.diff(x)))


def classification_metrics(y: np.ndarray, p: np.ndarray, shares: tuple[float, ...] = (0.05, 0.1, 0.2)) \
        -> dict[str, float]:
    # scikit-learn here, not with the module: loading the parameters (models.training) must not load it
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, int)
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    out = {
        "n": float(len(y)), "positives": float(y.sum()), "base_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if y.sum() > 0 else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }
    for s in shares:
        lift, cap = lift_capture(y, p, s)
        out[f"lift_at_{int(s * 100)}"] = lift
        out[f"capture_at_{int(s * 100)}"] = cap
    return out


def gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Normalised Gini of ``predicted`` as a ranking of ``actual`` values (1 = perfect order, 0 = random)."""
    a = np.asarray(actual, float)

    def raw(score: np.ndarray) -> float:
        order = np.lexsort((np.arange(len(a)), -score))
        cum = np.cumsum(a[order]) / a.sum()
        return float(cum.sum() / len(a) - (len(a) + 1) / (2 * len(a)))

    best = raw(a)
    return raw(np.asarray(predicted, float)) / best if best else float("nan")


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    a, p = np.asarray(actual, float), np.asarray(predicted, float)
    return {"n": float(len(a)), "mae": float(np.mean(np.abs(a - p))), "gini": gini(a, p),
            "mean_actual": float(a.mean()), "mean_predicted": float(p.mean())}


def expected_auc(p_true: np.ndarray, score: np.ndarray) -> float:
    """AUC of ``score`` expected over outcomes drawn with probabilities ``p_true``.

    Each row counts as a positive with weight p and a negative with weight 1 - p; scoring
    ``p_true`` itself gives the best AUC any model can expect on this population.
    """
    p = np.asarray(p_true, float)
    w = np.concatenate([p, 1 - p])
    y = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    s = np.concatenate([score, score])
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s, sample_weight=w))


def calibration_error_vs_truth(p_true: np.ndarray, p_model: np.ndarray, bins: int = 10) -> float:
    """Like ECE, but against the true probabilities: bins of predicted probability, |mean true - mean predicted|."""
    t, m = np.asarray(p_true, float), np.asarray(p_model, float)
    order = np.argsort(m, kind="stable")
    return float(sum(len(c) * abs(t[c].mean() - m[c].mean()) for c in np.array_split(order, bins) if len(c))
                 / len(m))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (SciPy's ``spearmanr``); NaN, without SciPy's warning, when an input is constant
    or holds a NaN: a channel whose predicted effect is flat has no ranking to compare, which is no fault to log."""
    from scipy.stats import spearmanr  # here: the rest of the module needs only NumPy

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any() or (a == a[0]).all() or (b == b[0]).all():
        return float("nan")
    return float(spearmanr(a, b).statistic)
