"""Drift between the data a model was trained on and the data it now scores: PSI, missing shares, new categories.

Population stability index: PSI = sum over bins of (a - e) * ln(a / e), with e the reference share and a
the current share of a bin. Numeric bins are the reference's deciles (ties merged); categorical bins are
the categories, missing values being a bin of their own. Rule of thumb: < 0.1 stable, 0.1-0.25 shifted,
> 0.25 a different population.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

_EPS = 1e-4


class DriftParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bins: int = Field(default=10, ge=2, le=100)
    feature_psi_warn: float = Field(gt=0)
    score_psi_warn: float = Field(gt=0)
    score_psi_block: float = Field(gt=0)      # a score this shifted blocks promotion
    missing_increase_warn: float = Field(gt=0, le=1)  # share of missing values up by this much
    unseen_category_warn: float = Field(gt=0, le=1)   # share of rows with a category training never saw


def psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    ref, cur = reference, current
    if isinstance(ref.dtype, pd.CategoricalDtype) or ref.dtype == object or pd.api.types.is_string_dtype(ref) \
            or pd.api.types.is_bool_dtype(ref):
        r = ref.astype("object").where(ref.notna(), "__missing__").value_counts(normalize=True)
        c = cur.astype("object").where(cur.notna(), "__missing__").value_counts(normalize=True)
        keys = r.index.union(c.index)
        e, a = r.reindex(keys, fill_value=0).to_numpy(float), c.reindex(keys, fill_value=0).to_numpy(float)
    else:
        rv = pd.to_numeric(ref, errors="coerce").to_numpy(float)
        cv = pd.to_numeric(cur, errors="coerce").to_numpy(float)
        qs = np.linspace(0, 1, bins + 1)[1:-1]
        edges = np.unique(np.nanquantile(rv, qs)) if np.isfinite(rv).any() else np.array([])

        def shares(x: np.ndarray) -> np.ndarray:
            finite = np.isfinite(x)
            counts = np.bincount(np.searchsorted(edges, x[finite], side="right"), minlength=len(edges) + 1)
            return np.append(counts, (~finite).sum()) / max(len(x), 1)
        e, a = shares(rv), shares(cv)
    e, a = np.clip(e, _EPS, None), np.clip(a, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
                  categories: dict[str, list[str]], p: DriftParams) -> pd.DataFrame:
    """Per feature: PSI, missing share before/after, share of unseen categories, and the warning it raises."""
    rows = []
    for c in columns:
        miss_ref, miss_cur = float(reference[c].isna().mean()), float(current[c].isna().mean())
        unseen = 0.0
        if c in categories:
            vals = current[c].dropna().astype(str)
            unseen = float((~vals.isin(categories[c])).sum() / max(len(current), 1))
        value = psi(reference[c], current[c], p.bins)
        warn = []
        if value > p.feature_psi_warn:
            warn.append("psi")
        if miss_cur - miss_ref > p.missing_increase_warn:
            warn.append("missing")
        if unseen > p.unseen_category_warn:
            warn.append("unseen_categories")
        rows.append({"feature": c, "psi": value, "missing_reference": miss_ref, "missing_current": miss_cur,
                     "unseen_category_share": unseen, "warning": ",".join(warn)})
    return pd.DataFrame(rows).sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def score_drift(reference: pd.DataFrame, current: pd.DataFrame, p: DriftParams) -> dict[str, dict[str, Any]]:
    """PSI of each score column between two snapshots; 'block' beyond ``score_psi_block``."""
    out = {}
    for c in reference.columns:
        value = psi(reference[c], current[c], p.bins)
        level = "block" if value > p.score_psi_block else "warn" if value > p.score_psi_warn else "ok"
        out[c] = {"psi": value, "level": level}
    return out
