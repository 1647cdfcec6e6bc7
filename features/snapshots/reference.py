"""A slow, obviously-correct pandas implementation of the snapshot features and labels.

Written independently of the SQL, from the definitions in docs/features.md: filter the events a
snapshot may see, then count. It is the oracle the tests check the DuckDB stage against value for value
(tests/unit/features/test_snapshots.py) and the baseline benchmarks/features_bench.py times it against; no stage
uses it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.snapshots.definitions import INCOME_MID, INCOME_RANK, MONTH_DAYS, FeatureParams

ANSWERED = ["reached", "interested", "quote", "appointment", "purchase", "complaint", "opt_out"]


def _days(s: pd.Timestamp, dates: pd.Series) -> pd.Series:
    return (s - dates.dt.normalize()).dt.days.astype("Int64")


def _months(s: pd.Timestamp, dates: pd.Series) -> pd.Series:
    d = (s - dates).dt.days
    return np.floor(d / MONTH_DAYS).astype("Int64")


def _per_customer(frame: pd.DataFrame, ids: pd.Index, agg: str, col: str = "policy_id") -> pd.Series:
    return frame.groupby("customer_id")[col].agg(agg).reindex(ids)


def _profile(out: pd.DataFrame, cu: pd.DataFrame, s: pd.Timestamp) -> None:
    out["age_years"] = (s - cu["birth_date"]).dt.days / 365.25
    for c in ("gender", "province", "occupation_class", "income_band"):
        out[c] = cu[c]
    out["income_rank"] = cu["income_band"].map(INCOME_RANK).astype("Int64")
    for c in ("marital_status", "children", "needs_class", "acquisition_source"):
        out[c] = cu[c]
    out["tenure_months"] = _months(s, cu["created_date"])
    out["was_referred"] = cu["referred_by"].notna()
    out["has_agent"] = cu["agent_id"].notna()



def _holdings(out: pd.DataFrame, t: dict[str, pd.DataFrame], p: FeatureParams, s: pd.Timestamp,
              ids: pd.Index, cu: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Policy counts and premiums at the snapshot; (policies issued before it, those in force)."""

    def per_customer(frame: pd.DataFrame, agg: str, col: str = "policy_id") -> pd.Series:
        return _per_customer(frame, ids, agg, col)

    po = t["policies"]
    seen = po[po["issue_date"] < s].copy()
    end = seen[["lapse_date", "surrender_date", "maturity_date"]].min(axis=1, skipna=True)
    seen["inforce"] = end.isna() | (end >= s)
    inf = seen[seen["inforce"]]

    out["n_inforce"] = per_customer(inf, "count").fillna(0).astype(int)
    out["premium_inforce"] = per_customer(inf, "sum", "annual_premium").fillna(0.0)
    out["sum_assured_inforce"] = per_customer(inf, "sum", "sum_assured").fillna(0.0)
    for ln in p.product_lines:
        sub = inf[inf["product_line"] == ln]
        out[f"n_inforce_{ln}"] = per_customer(sub, "count").fillna(0).astype(int)
        out[f"premium_inforce_{ln}"] = per_customer(sub, "sum", "annual_premium").fillna(0.0)
    out["n_lines_held"] = sum((out[f"n_inforce_{ln}"] > 0).astype(int) for ln in p.product_lines)
    biggest = inf.sort_values(["customer_id", "annual_premium", "issue_date", "payment_mode"],
                              ascending=[True, False, True, True]).drop_duplicates("customer_id")
    out["main_payment_mode"] = biggest.set_index("customer_id")["payment_mode"].reindex(ids)
    out["n_inforce_monthly"] = per_customer(inf[inf["payment_mode"] == "monthly"], "count").fillna(0).astype(int)
    out["premium_to_income"] = out["premium_inforce"] / cu["income_band"].map(INCOME_MID).astype(float)
    out["n_policies_ever"] = per_customer(seen, "count").fillna(0).astype(int)
    out["n_lapsed"] = per_customer(seen[seen["lapse_date"] < s], "count").fillna(0).astype(int)
    out["n_surrendered"] = per_customer(seen[seen["surrender_date"] < s], "count").fillna(0).astype(int)
    matured = seen[(seen["maturity_date"] < s) & (end == seen["maturity_date"])]
    out["n_matured"] = per_customer(matured, "count").fillna(0).astype(int)
    out["months_since_first_policy"] = _months(s, per_customer(seen, "min", "issue_date"))
    out["months_since_last_purchase"] = _months(s, per_customer(seen, "max", "issue_date"))
    lapse_dates = pd.concat([seen.loc[seen["lapse_date"] < s, ["customer_id", "lapse_date"]]
                             .rename(columns={"lapse_date": "d"}),
                             seen.loc[seen["surrender_date"] < s, ["customer_id", "surrender_date"]]
                             .rename(columns={"surrender_date": "d"})])
    out["months_since_last_lapse"] = _months(s, lapse_dates.groupby("customer_id")["d"].max().reindex(ids))
    return seen, inf


def _claims_referrals(out: pd.DataFrame, t: dict[str, pd.DataFrame], p: FeatureParams, s: pd.Timestamp,
                      ids: pd.Index) -> None:
    cl = t["claims"]
    cmax = p.claim_windows_days[-1]
    for w in p.claim_windows_days:
        sub = cl[(cl["claim_date"] < s) & (cl["claim_date"] >= s - pd.Timedelta(days=w))]
        out[f"n_claims_{w}d"] = sub.groupby("customer_id").size().reindex(ids).fillna(0).astype(int)
        out[f"claim_amount_{w}d"] = sub.groupby("customer_id")["amount"].sum().reindex(ids).fillna(0.0)
    sub = cl[(cl["claim_date"] < s) & (cl["claim_date"] >= s - pd.Timedelta(days=cmax)) & (cl["status"] == "rejected")]
    out[f"n_claims_rejected_{cmax}d"] = sub.groupby("customer_id").size().reindex(ids).fillna(0).astype(int)
    everyone = t["customers"]
    made = everyone[(everyone["created_date"] < s) & everyone["referred_by"].notna()]
    out["referrals_made"] = made.groupby("referred_by").size().reindex(ids).fillna(0).astype(int)


def _contacts(out: pd.DataFrame, t: dict[str, pd.DataFrame], p: FeatureParams, s: pd.Timestamp, ids: pd.Index,
              seen: pd.DataFrame) -> None:
    """Windowed counts, engagement and recency from the contact history."""
    co = t["contacts"]
    before = co[co["contact_ts"] < s]
    live = before[~before["holdout"]]
    for w in p.windows_days:
        win = live[live["contact_ts"] >= s - pd.Timedelta(days=w)]

        def count(frame: pd.DataFrame) -> pd.Series:
            return frame.groupby("customer_id").size().reindex(ids).fillna(0).astype(int)

        for ch in p.channels:
            out[f"n_{ch}_{w}d"] = count(win[win["channel"] == ch])
        out[f"n_contacts_{w}d"] = count(win)
        out[f"n_outbound_{w}d"] = count(win[win["direction"] == "outbound"])
        out[f"n_inbound_{w}d"] = count(win[win["direction"] == "inbound"])
        for o in p.outcomes:
            out[f"n_{o}_{w}d"] = count(win[win["outcome"] == o])
        answered = count(win[win["outcome"].isin(ANSWERED)])
        out[f"reached_rate_{w}d"] = (answered / out[f"n_contacts_{w}d"].replace(0, np.nan)).astype(float)
    wmax = p.windows_days[-1]
    out[f"n_distinct_channels_{wmax}d"] = sum((out[f"n_{ch}_{wmax}d"] > 0).astype(int) for ch in p.channels)
    win = live[live["contact_ts"] >= s - pd.Timedelta(days=wmax)]
    att = win[(win["channel"] == "event") & win["outcome"].isin(ANSWERED)]
    out[f"events_attended_{wmax}d"] = att.groupby("customer_id").size().reindex(ids).fillna(0).astype(int)
    hold = before[before["holdout"] & (before["contact_ts"] >= s - pd.Timedelta(days=p.holdout_window_days))]
    out["in_campaign_holdout"] = ids.isin(hold["customer_id"])
    out["opted_out"] = ids.isin(live.loc[live["outcome"] == "opt_out", "customer_id"])

    def last(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby("customer_id")["contact_ts"].max().reindex(ids)

    last_quote = last(live[live["outcome"] == "quote"])
    last_out = last(live[live["direction"] == "outbound"])
    out["days_since_last_contact"] = _days(s, last(live))
    out["days_since_last_answered"] = _days(s, last(live[live["outcome"].isin(ANSWERED)]))
    out["days_since_last_quote"] = _days(s, last_quote)
    out["days_since_last_complaint"] = _days(s, last(live[live["outcome"] == "complaint"]))
    last_issue = _per_customer(seen, ids, "max", "issue_date")
    # a follow-up is an outbound touch in a later minute than the quote (the engine keeps whole minutes)
    is_open = (last_quote.notna() & ~(last_out.dt.floor("min") > last_quote.dt.floor("min"))
               & ~(last_issue >= last_quote.dt.normalize()))
    out["open_quote"] = is_open
    out["open_quote_age_days"] = _days(s, last_quote).where(is_open)


def _labels(out: pd.DataFrame, t: dict[str, pd.DataFrame], inf: pd.DataFrame, s: pd.Timestamp, ids: pd.Index,
            horizon: int, labels_known: bool) -> None:
    po = t["policies"]
    if labels_known:
        h_end = s + pd.Timedelta(days=horizon)
        new = po[(po["issue_date"] >= s) & (po["issue_date"] < h_end)]
        out["purchase_h"] = ids.isin(new["customer_id"]).astype(int)
        out["premium_h"] = new.groupby("customer_id")["annual_premium"].sum().reindex(ids).fillna(0.0)
        gone = inf[((inf["lapse_date"] >= s) & (inf["lapse_date"] < h_end))
                   | ((inf["surrender_date"] >= s) & (inf["surrender_date"] < h_end))]
        holder = out["n_inforce"] > 0
        out["lapse_h"] = pd.Series(ids.isin(gone["customer_id"]).astype(int), index=ids).where(holder).astype("Int64")
        out["purchase_h"] = out["purchase_h"].astype("Int64")
    else:
        out["purchase_h"] = pd.Series(pd.NA, index=ids, dtype="Int64")
        out["lapse_h"] = pd.Series(pd.NA, index=ids, dtype="Int64")
        out["premium_h"] = np.nan


def reference_snapshot(t: dict[str, pd.DataFrame], p: FeatureParams, snapshot: dt.date, horizon: int,
                       labels_known: bool) -> pd.DataFrame:
    s = pd.Timestamp(snapshot)
    cu = t["customers"]
    cu = cu[cu["created_date"] < s].set_index("customer_id", drop=False)
    ids = cu.index
    out = pd.DataFrame(index=ids)  # built column by column on purpose: clarity over speed
    out["customer_id"] = ids
    out["snapshot_date"] = s
    _profile(out, cu, s)
    seen, inf = _holdings(out, t, p, s, ids, cu)
    _claims_referrals(out, t, p, s, ids)
    _contacts(out, t, p, s, ids, seen)
    _labels(out, t, inf, s, ids, horizon, labels_known)
    labels = ["purchase_h", "lapse_h", "premium_h"]
    return out[[c for c in out.columns if c not in labels] + labels].reset_index(drop=True)
