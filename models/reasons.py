"""Reasons a human can read: the features that pushed a customer's score up or down, in English and Chinese.

The model's per-row feature contributions (TreeSHAP, LightGBM's ``pred_contrib`` values: SHAP values in
log-odds for the propensity model) say how much each feature moved this customer's score away from the
average. The top positive ones are the reasons *for* contacting, the most negative the reasons *against*.
Each is rendered through the feature dictionary with the customer's own value, e.g.
"Quotes in the last 90 days: 3 / 近90天报价次数: 3".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models import contributions as exact

if TYPE_CHECKING:
    import lightgbm as lgb

NONE_EN, NONE_ZH = "none", "无"


def contributions(booster: lgb.Booster, X: pd.DataFrame, centre: dict[str, float] | None = None) -> pd.DataFrame:
    """Per-row, per-feature contributions (the bias column dropped), indexed like ``X``. ``centre``: a linear-tree
    model's ``linear_centre`` from its meta.json (models/contributions.py)."""
    raw = exact.contributions(booster, X, centre)
    return pd.DataFrame(raw[:, :-1], index=X.index, columns=X.columns)


def to_explain(tier: pd.Series, channel: pd.Series | None, tiers: Sequence[str],
               channels: Sequence[str]) -> np.ndarray:
    """The rows whose reasons someone reads: a tier in ``tiers`` (what sales teams work through) or a planned
    touch through one of ``channels`` (the agent-led ones: an agent makes the call or visit). Batch SMS, WeChat
    and email go out without anyone reading a reason. TreeSHAP is most of an export's cost and grows with the
    rows explained (docs/benchmarks.md), so the rest get theirs on demand (``python -m pipelines.explain``)."""
    mask = tier.isin(list(tiers))
    if channel is not None:
        mask = mask | channel.isin(list(channels))
    return mask.to_numpy(bool, copy=True)


def number(f: float) -> str:
    """A number at its own scale: thousands separated from 100 up, two decimals from 1, two significant digits
    below 1 (0.0034, not 0), never a trailing zero."""
    if not np.isfinite(f):
        return str(f)
    a = abs(f)
    if a >= 100 or a == 0:
        return f"{f:,.0f}"
    text = f"{f:.2f}" if a >= 1 else f"{f:.{max(2, 1 - int(np.floor(np.log10(a))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _value(v: Any, dtype: str, labels: dict[str, dict[str, str]] | None = None) -> tuple[str, str]:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return NONE_EN, NONE_ZH
    if labels and str(v) in labels:  # a coded value the source put into words
        return labels[str(v)]["en"], labels[str(v)]["zh"]
    if dtype == "bool":
        return ("yes", "是") if bool(v) else ("no", "否")
    if dtype == "int":
        return f"{int(round(float(v))):,}", f"{int(round(float(v))):,}"
    if dtype == "float":
        text = number(float(v))
        return text, text
    return str(v), str(v)


def render(feature: str, value: Any, dictionary: dict[str, dict[str, Any]]) -> str:
    """"<description>: <value> / <中文描述>: <值>" for one feature of one customer. Without a Chinese description
    of its own (a user's column described in English only, or not at all) the Chinese half names the column in a
    generic phrase instead of repeating the English half."""
    d = dictionary.get(feature, {})
    en, zh = _value(value, str(d.get("dtype", "float")), d.get("values"))
    text_en = d.get("en") or feature
    text_zh = d.get("zh")
    if not text_zh or text_zh == text_en:
        return f"{text_en}: {en} / 字段“{feature}”的取值: {zh}"
    return f"{text_en}: {en} / {text_zh}: {zh}"


def top_reasons(contrib: pd.DataFrame, values: pd.DataFrame, dictionary: dict[str, dict[str, Any]], k: int = 3,
                min_abs: float = 1e-6) -> pd.DataFrame:
    """Columns ``reason_for_1..k`` and ``reason_against_1..k`` (empty string when fewer qualify).

    Ties are broken by feature order so the same model and data always give the same reasons. Each slot is filled
    feature by feature, and each distinct value of a feature is rendered once: a loop over rows, and an object copy
    of every value of the design, took about 4 s per 200,000 customers explained.
    """
    c = contrib.to_numpy(float)
    n = len(c)
    names = list(contrib.columns)
    out: dict[str, np.ndarray] = {}
    rows_n = np.arange(n)
    for side, sign in (("for", 1.0), ("against", -1.0)):
        # the k largest by repeated argmax, which takes the first of equal values: a stable sort's first k, without
        # sorting every feature of every row (5 of the 5M export's 90 s)
        left = sign * c  # a copy: the slots taken are set to -inf in it
        for i in range(k):
            if i >= len(names):  # fewer features than slots
                j, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
            else:
                j = left.argmax(axis=1)
                ok = sign * c[rows_n, j] > min_abs
                left[rows_n, j] = -np.inf
            text = np.full(n, "", dtype=object)
            for f in np.unique(j[ok]):
                rows = np.flatnonzero(ok & (j == f))
                text[rows] = _rendered(names[f], values[names[f]].iloc[rows], dictionary)
            out[f"reason_{side}_{i + 1}"] = text
    return pd.DataFrame(out, index=contrib.index)


def _rendered(feature: str, v: pd.Series, dictionary: dict[str, dict[str, Any]]) -> np.ndarray:
    """``render`` of each value of one feature, each distinct value once (in the column's own type: 1 and 1.0 may
    render apart, so a column of mixed Python objects is rendered value by value)."""
    if v.dtype == object:
        return np.array([render(feature, x, dictionary) for x in v.to_numpy()], dtype=object)
    codes, uniques = pd.factorize(v, use_na_sentinel=True)
    distinct = [render(feature, x, dictionary) for x in np.asarray(uniques, dtype=object)]
    return np.array([*distinct, render(feature, None, dictionary)], dtype=object)[codes]
