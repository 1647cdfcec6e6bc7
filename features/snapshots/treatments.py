"""Point-in-time treatments: which touch each customer received right after each snapshot.

A snapshot ``s`` sees features from ``[.., s)`` and labels from ``[s, s + H)``. The treatment sits between them,
at the start of the label window:

* **observational treatment** (what the uplift learner fits): the channel of the first outbound *selling* touch
  (purpose ``sales`` or ``event_invite``, not a campaign holdout row) in ``[s, s + treatment_window)``; ``none``
  when the customer had no outbound touch at all in that window; excluded (null) when the only outbound
  touches were of another purpose (service, care, renewal, quote follow-up), which are neither "a selling touch
  now" nor "no touch";
* **randomised arm** (the unbiased evaluation set): per campaign channel, ``1`` when a campaign touched the
  customer through that channel in ``[s, s + experiment_window)`` and ``0`` when the customer was drawn into
  that campaign's random holdout instead (selected, deliberately not contacted). Within a campaign the split
  is random, so treated and held-out rows are exchangeable whatever the targeting rule was.

Pure: the caller registers a DuckDB relation ``contacts`` (the validated contact table) and gets a DataFrame.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

SELLING_PURPOSES = ("sales", "event_invite")
PLANNABLE_CHANNELS = ("phone", "sms", "wechat", "email", "letter", "visit", "event")
TREATMENT_COLUMNS = ["snapshot_date", "customer_id", "treatment", *(f"arm_{c}" for c in PLANNABLE_CHANNELS)]


def treatment_sql(treatment_window_days: int, experiment_window_days: int) -> str:
    """One row per (snapshot, customer) with any outbound contact row in the longer window."""
    long = max(treatment_window_days, experiment_window_days)
    selling = ", ".join(f"'{p}'" for p in SELLING_PURPOSES)
    arms = ",\n  ".join(
        f"MAX(CASE WHEN campaign_id IS NOT NULL AND channel = '{c}' AND in_exp THEN "
        f"CASE WHEN holdout THEN 0 ELSE 1 END END) AS arm_{c}" for c in PLANNABLE_CHANNELS)
    return f"""
WITH snaps AS (SELECT CAST(UNNEST(CAST(? AS DATE[])) AS TIMESTAMP) AS s),
w AS (
  SELECT s.s AS snapshot_date, c.customer_id, c.contact_ts, c.channel, c.purpose, c.holdout, c.campaign_id,
         c.contact_ts < s.s + INTERVAL {int(treatment_window_days)} DAY AS in_treat,
         c.contact_ts < s.s + INTERVAL {int(experiment_window_days)} DAY AS in_exp
  FROM contacts c JOIN snaps s
    ON c.contact_ts >= s.s AND c.contact_ts < s.s + INTERVAL {int(long)} DAY
  WHERE c.direction = 'outbound'
)
SELECT CAST(snapshot_date AS DATE) AS snapshot_date, customer_id,
  ARG_MIN(channel, contact_ts) FILTER (WHERE in_treat AND NOT holdout AND purpose IN ({selling})) AS first_selling,
  BOOL_OR(in_treat AND NOT holdout) AS any_touch,
  {arms}
FROM w GROUP BY ALL
"""


def treatments(con: duckdb.DuckDBPyConnection, snapshots: list[dt.date], treatment_window_days: int,
               experiment_window_days: int) -> pd.DataFrame:
    """Rows with something to say: a touch in the treatment window or a campaign arm in the experiment window.

    Customers absent from the result had no outbound touch and no campaign arm: their treatment is ``none``
    (``assign_treatment`` fills that in for a snapshot's rows).
    """
    sql = treatment_sql(treatment_window_days, experiment_window_days)
    out = con.execute(sql, [list(snapshots)]).df()
    plannable = out["first_selling"].isin(PLANNABLE_CHANNELS)
    out["treatment"] = out["first_selling"].where(plannable)
    out.loc[~out["any_touch"].fillna(False).astype(bool), "treatment"] = "none"
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).dt.date
    return out[TREATMENT_COLUMNS]


def assign_treatment(rows: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (snapshot_date, customer_id, ...) with ``treatment`` and the ``arm_<channel>`` columns: customers
    without any outbound contact row in the window are ``none`` with no arm."""
    key = ["snapshot_date", "customer_id"]
    left = rows.assign(snapshot_date=pd.to_datetime(rows["snapshot_date"]).dt.date)
    out = left.merge(found, on=key, how="left", validate="one_to_one", indicator="_found")
    out.loc[out["_found"] == "left_only", "treatment"] = "none"
    return out.drop(columns="_found")


def followup_purchase_sql(horizon_days: int) -> str:
    """Per (snapshot, customer): a purchase in the label window closed by a quote follow-up touch."""
    return f"""
WITH snaps AS (SELECT CAST(UNNEST(CAST(? AS DATE[])) AS TIMESTAMP) AS s)
SELECT CAST(s.s AS DATE) AS snapshot_date, c.customer_id, TRUE AS followup_purchase
FROM contacts c JOIN snaps s ON c.contact_ts >= s.s AND c.contact_ts < s.s + INTERVAL {int(horizon_days)} DAY
WHERE c.purpose = 'quote_followup' AND c.outcome = 'purchase'
GROUP BY ALL
"""


def direct_purchase(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, horizon_days: int) -> pd.Series:
    """The purchase label less purchases closed by a quote follow-up (null where the label is null).

    A follow-up is a touch of its own, made because an earlier touch produced a quote; crediting its sale to
    the first touch would measure "touch now and keep chasing" rather than "touch now".
    """
    snaps = sorted(pd.to_datetime(rows["snapshot_date"]).dt.date.unique())
    fu = con.execute(followup_purchase_sql(horizon_days), [snaps]).df()
    fu["snapshot_date"] = pd.to_datetime(fu["snapshot_date"]).dt.date
    key = pd.MultiIndex.from_arrays([pd.to_datetime(rows["snapshot_date"]).dt.date, rows["customer_id"]])
    closed = key.isin(pd.MultiIndex.from_frame(fu[["snapshot_date", "customer_id"]]))
    label = rows["purchase_h"].astype("float64")
    return label.where(label.isna(), ((label == 1) & ~closed).astype(float))
