"""The segment stage's evaluation, pure: the tier backtest of both schemes (ML and the rule playbook) on a
snapshot whose labels have matured, and the plan's volume and week-one summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models import segments as sg

GROUPS = {"rule_quadrant": sg.QUADRANTS, "ml_quadrant": sg.QUADRANTS, "priority_tier": sg.TIERS,
          "rule_tier": sg.TIERS, "value_tier": sg.VALUE_TIERS, "closeness": sg.CLOSENESS,
          "behaviour": sg.BEHAVIOURS}


def tier_backtest(bt: pd.DataFrame, rule_score: np.ndarray) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Both schemes on a snapshot with matured labels: tables per segment and tier, and the headline checks."""
    tables = {by: sg.backtest_table(bt, by, order) for by, order in GROUPS.items()}
    tables["crosstab_rule_vs_ml"] = pd.crosstab(bt["rule_quadrant"], bt["ml_quadrant"]).reindex(
        index=list(sg.QUADRANTS), columns=list(sg.QUADRANTS), fill_value=0).rename_axis(
        index="rule_quadrant", columns=None).reset_index()
    ml, rule = tables["priority_tier"], tables["rule_tier"]
    report: dict[str, Any] = {
        "snapshot": str(bt["snapshot_date"].iloc[0]), "customers": len(bt),
        "tiers_monotone_purchase_rate": sg.is_monotone_decreasing(ml["realised_purchase_rate"]),
        "tiers_monotone_premium": sg.is_monotone_decreasing(ml["realised_premium_per_customer"]),
        "rule_tiers_monotone_purchase_rate": sg.is_monotone_decreasing(rule["realised_purchase_rate"]),
        "pamper_vs_rule_pamper": sg.same_size_comparison(bt, (bt["ml_quadrant"] == "pamper").to_numpy(),
                                                         rule_score, (bt["rule_quadrant"] == "pamper").to_numpy()),
        "p1_vs_rule_top": sg.same_size_comparison(bt, (bt["priority_tier"] == "P1").to_numpy(), rule_score),
        "tiers": {r["priority_tier"]: {k: float(r[k]) for k in ("customers", "expected_purchases",
                                                                 "realised_purchases", "expected_lapses",
                                                                 "realised_lapses", "realised_premium")}
                  for r in ml.to_dict("records")},
    }
    return report, tables


def plan_volume(seg: pd.DataFrame, as_of: pd.Timestamp, weekly: dict[str, int]) -> pd.DataFrame:
    """Planned first touches per plan week (weeks start at as-of) and channel, beside the weekly capacity."""
    planned = seg.loc[~seg["suppressed"], ["next_contact_date", "channel"]]  # not all 57 columns (3 GB at 5M)
    week = (pd.to_datetime(planned["next_contact_date"]) - as_of).dt.days // 7
    vol = planned.assign(week=week).groupby(["week", "channel"]).size().rename("contacts").reset_index()
    vol["week_start"] = [(as_of + pd.Timedelta(days=7 * int(w))).date() for w in vol["week"]]
    vol["capacity"] = vol["channel"].map(weekly).astype("Int64")
    return vol[["week", "week_start", "channel", "contacts", "capacity"]]


def plan_summary(seg: pd.DataFrame, as_of: pd.Timestamp, channels: tuple[str, ...], weeks: int,
                 weekly: dict[str, int]) -> dict[str, Any]:
    """Week one's touches per channel beside capacity, and the plan's value as the optimiser sees it."""
    in_week1 = pd.to_datetime(seg["next_contact_date"]) < as_of + pd.Timedelta(days=7)
    week1 = seg.loc[in_week1, ["channel", "contact_value"]]  # not all 57 columns (3 GB at 5M customers)
    counts = week1["channel"].value_counts().to_dict()
    return {"effect_form": str(seg["effect_form"].iloc[0]) if len(seg) else "",
            "weeks": weeks, "week1_touches": {c: int(counts.get(c, 0)) for c in channels},
            "week1_touches_total": int(len(week1[week1["channel"].notna()])),
            "week1_over_capacity": any(counts.get(c, 0) > cap for c, cap in weekly.items()),
            "week1_expected_value": float(week1["contact_value"].sum()),
            "customers_planned": int(seg["channel"].notna().sum()),
            "touches_planned": int(seg["touches_planned"].sum())}
