"""Which snapshots a run computes: the as-of date and the monthly training snapshots before it, and the share of
customers the training snapshots keep. Pure: dates and typed params in, the plan out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from features.snapshots.definitions import FeatureParams


@dataclass(frozen=True)
class Snapshot:
    date: dt.date
    labels_known: bool  # the horizon [date, date + H) ended on or before as-of
    scoring: bool


def snapshot_plan(as_of: dt.date, p: FeatureParams, horizon_days: int, history_start: dt.date | None = None) \
        -> list[Snapshot]:
    """Monthly snapshots back from ``as_of`` (oldest first); ``as_of`` itself is the scoring snapshot.

    Snapshots earlier than one longest window after ``history_start`` are dropped: their windowed
    counts would be truncated by the start of the data, not by the customer's behaviour. A month-end
    ``as_of`` steps back by month ends (2026-10-31: 09-30, 08-31, ...), so next month's run has this
    run's dates and the features stage's cache reads them back; any other day steps back to the same
    day of the month.
    """
    out, ts = [], pd.Timestamp(as_of)
    for k in range(p.n_train_snapshots, -1, -1):
        months = k * p.snapshot_step_months
        back = pd.offsets.MonthEnd(months) if ts.is_month_end and months else pd.DateOffset(months=months)
        s = (ts - back).date()
        if history_start is not None and k and s < history_start + dt.timedelta(days=p.windows_days[-1]):
            continue
        out.append(Snapshot(s, labels_known=s + dt.timedelta(days=horizon_days) <= as_of, scoring=k == 0))
    return out


def sample_fraction(p: FeatureParams, n_customers: int) -> float | None:
    """Share of customers kept at training snapshots (None = all).

    Why sampling rather than reusing work: each snapshot's windows cover a different stretch of the
    history, so a per-snapshot scan of the events inside the longest window is already the minimum
    work per snapshot; what grows with the book is the number of customers. Keeping the same stable
    sample of customers at every training snapshot bounds the training cost for any book size while
    the scoring snapshot always covers everyone.
    """
    if p.train_sample_max_customers and n_customers > p.train_sample_max_customers:
        return p.train_sample_max_customers / n_customers
    return None
