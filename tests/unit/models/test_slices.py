"""Per-slice metrics and their retraining gate (models/slices.py): properties, not golden numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import promotion, slices


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"gender": rng.choice(["F", "M"], n), "age_years": rng.integers(18, 80, n).astype(float),
                         "province": rng.choice(["上海", "广东", "四川"], n), "tenure_months": rng.integers(0, 200, n),
                         "n_contacts_90d": rng.poisson(0.7, n)})


def test_slice_labels_cut_the_features_the_frame_has() -> None:
    df = _frame(500)
    df.loc[3, "age_years"] = np.nan
    labels = slices.slice_labels(df)
    assert set(labels) == {"gender", "age_band", "province", "tenure_band", "contacted_90d"}
    ages = df["age_years"]
    assert (labels["age_band"][(ages >= 60).to_numpy()] == "60+").all() and labels["age_band"][3] == "unknown"
    assert (labels["age_band"][(ages < 30).to_numpy()] == "<30").all()
    assert set(labels["contacted_90d"][(df["n_contacts_90d"] == 0).to_numpy()]) == {"not contacted"}
    assert slices.slice_labels(df[["gender"]]).keys() == {"gender"}  # only what the source has


def test_a_slice_where_the_model_is_blind_fails_the_gate_and_small_slices_are_not_judged() -> None:
    rng = np.random.default_rng(1)
    df = _frame(20_000, seed=2)
    labels = slices.slice_labels(df)
    y = (rng.random(len(df)) < 0.1).astype(int)
    p = np.where(y == 1, rng.uniform(0.3, 1.0, len(df)), rng.uniform(0.0, 0.7, len(df)))  # a good ranking ...
    blind = labels["province"] == "广东"
    p[blind] = rng.uniform(0, 1, blind.sum())  # ... except in one province
    rows = slices.slice_metrics(y, p, labels, min_positives=30)
    by = {(r["slice"], r["value"]): r for r in rows}
    assert abs(by[("province", "广东")]["roc_auc"] - 0.5) < 0.05 and by[("province", "上海")]["roc_auc"] > 0.8
    assert all(r["judged"] for r in rows)
    gate = slices.slice_gates({"purchase": rows}, min_auc=0.55)[0]
    assert gate["gate"] == "purchase.slices" and not gate["passed"] and "province=广东" in gate["detail"]
    few = slices.slice_metrics(y[:300], p[:300], {k: v[:300] for k, v in labels.items()}, min_positives=30)
    assert not any(r["judged"] for r in few) and slices.slice_gates({"purchase": few}, 0.55)[0]["passed"]


def test_a_failed_slice_gate_keeps_the_champion_even_when_it_is_stale() -> None:
    checks = [{"gate": "purchase.auc_floor", "passed": True, "detail": ""},
              {"gate": "purchase.slices", "passed": False, "detail": "province=广东 AUC 0.50"}]
    decision, why = promotion.decide(checks, has_champion=True, already=False, champion_age_days=400,
                                     max_age_days=120)
    assert decision == "kept" and "purchase.slices" in why
