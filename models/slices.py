"""Per-slice model quality: does the model work as well for every group of customers it ranks?

An overall AUC can hide a slice where the ranking is no better than chance (a province with few buyers, the
never-contacted, the newest customers), and a calibrated model can be miscalibrated within a slice. The ML
Test Score asks for both to be measured and gated. Slices are cut from the feature table's own columns: gender,
age band, province, tenure band and whether the customer was contacted in the last 90 days; a slice is judged
only when it has enough positives for its AUC to mean something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import classification_metrics


def _band(col: str, edges: list[float], names: list[str]) -> Callable[[pd.DataFrame], pd.Series]:
    def cut(df: pd.DataFrame) -> pd.Series:
        x = pd.to_numeric(df[col], errors="coerce")
        return pd.Series(pd.cut(x, [-np.inf, *edges, np.inf], right=False, labels=names), index=df.index).astype(
            object).where(x.notna(), "unknown")
    return cut


# slice name -> (the feature it needs, how a row's slice value is cut from the feature table)
SLICES: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series]]] = {
    "gender": ("gender", lambda df: df["gender"].astype(object).where(df["gender"].notna(), "unknown")),
    "age_band": ("age_years", _band("age_years", [30, 45, 60], ["<30", "30-44", "45-59", "60+"])),
    "province": ("province", lambda df: df["province"].astype(object).where(df["province"].notna(), "unknown")),
    "tenure_band": ("tenure_months", _band("tenure_months", [12, 60], ["<1y", "1-5y", "5y+"])),
    "contacted_90d": ("n_contacts_90d", lambda df: np.where(
        pd.to_numeric(df["n_contacts_90d"], errors="coerce").fillna(0) > 0, "contacted", "not contacted")),
}
COLUMNS = [col for col, _ in SLICES.values()]


def slice_labels(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row's value of every slice whose feature the frame has (a tabular file may have none)."""
    return {name: np.asarray(cut(frame), dtype=object).astype(str) for name, (col, cut) in SLICES.items()
            if col in frame.columns}


def slice_metrics(y: np.ndarray, p: np.ndarray, labels: dict[str, np.ndarray], min_positives: int,
                  top_share: float = 0.1) -> list[dict[str, Any]]:
    """AUC, ECE and the share of the slice in the overall top ``top_share`` (by ``p``) for every slice value.

    ``judged`` is true when the slice has at least ``min_positives`` positives and negatives: only those carry
    an AUC a gate may act on (a slice of 12 buyers has an AUC anywhere between 0.4 and 0.9 by chance)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    top = np.zeros(len(p), dtype=bool)
    top[np.argsort(-p, kind="stable")[: int(round(top_share * len(p)))]] = True
    rows: list[dict[str, Any]] = []
    for name, values in labels.items():
        for value in sorted(set(values)):
            m = values == value
            pos, neg = int(y[m].sum()), int(m.sum() - y[m].sum())
            judged = min(pos, neg) >= min_positives
            met = classification_metrics(y[m], p[m]) if min(pos, neg) > 0 else {}
            rows.append({"slice": name, "value": value, "rows": int(m.sum()), "positives": pos,
                         "positive_rate": float(y[m].mean()), "mean_p": float(p[m].mean()),
                         "roc_auc": met.get("roc_auc"), "ece": met.get("ece"),
                         "top_share": float(top[m].mean()), "judged": judged})
    return rows


def slice_gates(metrics: dict[str, list[dict[str, Any]]], min_auc: float) -> list[dict[str, Any]]:
    """One gate per model: every judged slice's AUC at or above ``min_auc`` (a floor below the overall one)."""
    checks = []
    for model, rows in metrics.items():
        judged = [r for r in rows if r["judged"]]
        low = [f"{r['slice']}={r['value']} AUC {r['roc_auc']:.3f}" for r in judged if r["roc_auc"] < min_auc]
        checks.append({"gate": f"{model}.slices", "passed": not low,
                       "detail": (f"{len(judged)} slices with enough positives, all with AUC >= {min_auc}"
                                  if not low else f"below the slice floor {min_auc}: {', '.join(low)}")})
    return checks
