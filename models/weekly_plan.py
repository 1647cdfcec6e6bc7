"""The contact plan: week by week, the touches that add the most incremental value within capacity.

Each planning week is one allocation problem (``models.allocation``): at most one channel (or none) per
customer, agent-led channels within their weekly capacity (overall and per agent), the batch channels free.
The playbook supplies the constraints and defaults, not the choice:

* consent (do-not-call blocks phone, do-not-SMS blocks SMS), opt-outs and recent complaints (no touch at all);
* ``channel_min_tier`` (e.g. visits and events for P1-P2 only);
* the frequency caps per channel (counted from the history and from the touches planned in earlier weeks);
* a minimum interval since the last touch: the cadence's interval for the customer's segment times the tier's
  multiple, or the quote follow-up's interval while a quote is open. This is the plan's "how often".

Later weeks follow from the state the earlier ones leave: a customer touched in week w waits out the interval,
and the touch counts towards the caps. The effects are today's estimates for every week (re-scoring weekly is
what the monthly retrain and a re-run of the stage are for).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.intake.keys import mapped, positions
from models import allocation
from models.contact_plan import CONSENT_BLOCKS, Cap, PlanParams, cap_free_dates, suppression
from models.segments import TIERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanInputs:
    """Everything one plan needs, aligned by row (one row per customer)."""

    value: np.ndarray                 # (customers x channels) net incremental value, CNY
    channels: tuple[str, ...]
    allowed: np.ndarray               # (customers x channels) consent, suppression, tier: allowed at all
    interval_days: np.ndarray         # minimum days since the last touch
    last_touch: np.ndarray            # days from as-of back to the last outbound touch (negative), or NaN
    history_30d: np.ndarray           # (weeks x customers x channels) past touches in the 30 days before week w
    cap_free_day: np.ndarray          # (customers x channels) first day (from as-of) the history's caps allow
    agent: np.ndarray | None = None   # agent index, -1 without one


def base_allowed(customers: pd.DataFrame, channels: tuple[str, ...], suppressed: np.ndarray,
                 channel_min_tier: dict[str, str]) -> np.ndarray:
    """(customers x channels): consent, suppression and minimum tier. ``customers`` needs priority_tier and the
    consent flags."""
    ok = np.repeat(~np.asarray(suppressed, bool)[:, None], len(channels), axis=1)
    tier_rank = mapped(customers["priority_tier"], {t: i for i, t in enumerate(TIERS)}).to_numpy()
    for j, ch in enumerate(channels):
        for flag, blocked in CONSENT_BLOCKS.items():
            if blocked == ch:
                ok[:, j] &= ~customers[flag].fillna(False).astype(bool).to_numpy()
        if ch in channel_min_tier:
            ok[:, j] &= tier_rank <= TIERS.index(channel_min_tier[ch])
    return ok


def history_counts(recent: pd.DataFrame, customer_ids: pd.Series, channels: tuple[str, ...], as_of: dt.date,
                   weeks: int, window_days: int = 30) -> np.ndarray:
    """(weeks x customers x channels): past touches that still fall in the ``window_days`` before each week."""
    out = np.zeros((weeks, len(customer_ids), len(channels)), np.int32)
    if recent.empty:
        return out
    at = positions(recent["customer_id"], customer_ids)
    keep = recent["channel"].isin(channels).to_numpy() & (at >= 0)
    r, rows = recent[keep], at[keep]
    cols = pd.Index(channels).get_indexer(r["channel"])
    day = (pd.to_datetime(r["date"]) - pd.Timestamp(as_of)).dt.days.to_numpy()
    for w in range(weeks):
        inside = day >= 7 * w - window_days
        np.add.at(out[w], (rows[inside], cols[inside]), 1)
    return out


def feasible(inp: PlanInputs, week: int, last: np.ndarray, planned30: np.ndarray, caps: dict[str, Cap],
             ) -> np.ndarray:
    """(customers x channels): the touches allowed in ``week`` given the last touch (days from as-of) and the
    touches already planned in the trailing 30 days."""
    day = 7 * week
    ok = inp.allowed & (inp.cap_free_day <= day)
    since = day - np.nan_to_num(last, nan=-np.inf)
    ok &= (since >= inp.interval_days)[:, None]
    limit = np.array([caps[c].per_30d if c in caps else np.iinfo(np.int32).max for c in inp.channels])
    history = inp.history_30d[min(week, len(inp.history_30d) - 1)]
    return ok & ((history + planned30) < limit[None, :])


def plan_weeks(inp: PlanInputs, weeks: int, capacity: dict[str, int], agent_capacity: dict[str, int],
               caps: dict[str, Cap], method: str = "auto") -> pd.DataFrame:
    """Plan ``weeks`` weeks; one row per planned touch: row (customer position), week, day (from as-of),
    channel, value."""
    n, k = inp.value.shape
    last = inp.last_touch.astype(float).copy()
    planned30 = np.zeros((n, k), np.int32)
    touches: list[pd.DataFrame] = []
    started = time.perf_counter()
    for w in range(weeks):
        value = np.where(feasible(inp, w, last, planned30, caps), inp.value, -np.inf)
        problem = allocation.Problem(value, inp.channels, capacity, inp.agent,
                                     agent_capacity if inp.agent is not None else {})
        choice = allocation.solve(problem, method)
        rows = np.flatnonzero(choice != allocation.NONE)
        touches.append(pd.DataFrame({"row": rows, "week": w, "day": 7 * w,
                                     "channel": np.asarray(inp.channels, dtype=object)[choice[rows]],
                                     "value": inp.value[rows, choice[rows]]}))
        last[rows] = 7 * w
        planned30[rows, choice[rows]] += 1
        # a week of a large book takes a while (3-5 s on the 5M benchmark book, more with more candidates): say so
        log.info("planned week %d of %d: %s touches for %s customers (%.0f s)", w + 1, weeks, f"{len(rows):,}",
                 f"{n:,}", time.perf_counter() - started)
        if w >= 4:  # a touch planned four weeks ago leaves the 30-day window
            old = touches[w - 4]
            planned30[old["row"].to_numpy(), pd.Index(inp.channels).get_indexer(old["channel"])] -= 1
    return pd.concat(touches, ignore_index=True)


def plan_reason(channel: str, tau_purchase: float, value_sale: float, tau_lapse: float, value_lapse: float,
                cost: float) -> str:
    """A line an agent can read: "visit: +3.1 pt purchase, -0.4 pt lapse, +620 CNY expected, cost 150"."""
    parts = [f"{channel}: {tau_purchase * 100:+.1f} pt purchase"]
    if abs(tau_lapse) >= 5e-4:
        parts.append(f"{tau_lapse * 100:+.1f} pt lapse")
    gain = tau_purchase * value_sale - tau_lapse * value_lapse
    parts.append(f"{gain:+,.0f} CNY expected, cost {cost:g}")
    return ", ".join(parts)


def build_inputs(customers: pd.DataFrame, value: np.ndarray, channels: tuple[str, ...], recent: pd.DataFrame,
                 as_of: dt.date, p: PlanParams, weeks: int, agent: np.ndarray | None) -> PlanInputs:
    """Plan inputs from one row per customer (customer_id, priority_tier, ml_quadrant, opted_out,
    days_since_last_complaint, open_quote, days_since_last_quote, last_outbound_date, consent flags) and the
    past outbound touches ``recent`` (customer_id, channel, date; the last 30 days at least)."""
    c = customers.reset_index(drop=True)
    suppressed = suppression(c, p).to_numpy() != ""
    allowed = base_allowed(c, channels, suppressed, p.channel_min_tier)
    open_quote = c["open_quote"].fillna(False).astype(bool).to_numpy()
    quote_days = np.nan_to_num(c["days_since_last_quote"].astype("float64").to_numpy(), nan=np.inf)
    quoting = open_quote | (quote_days <= p.quote_followup.active_days)
    cadence = mapped(c["ml_quadrant"], {q: v.interval_days for q, v in p.cadence.items()}).astype(float).to_numpy()
    mult = mapped(c["priority_tier"], p.tier_interval_multiple).astype(float).to_numpy()
    interval = np.where(quoting, p.quote_followup.then_every_days, np.ceil(cadence * mult))
    last = (pd.to_datetime(c["last_outbound_date"]) - pd.Timestamp(as_of)).dt.days.to_numpy(float)
    free = cap_free_dates(recent, p.caps)
    free_day = np.zeros((len(c), len(channels)))
    if not free.empty:
        at = positions(free["customer_id"], c["customer_id"])
        keep = (at >= 0) & free["channel"].isin(channels).to_numpy()
        free, rows = free[keep], at[keep]
        cols = pd.Index(channels).get_indexer(free["channel"])
        free_day[rows, cols] = (pd.to_datetime(free["free_date"]) - pd.Timestamp(as_of)).dt.days.to_numpy()
    return PlanInputs(value=value, channels=channels, allowed=allowed, interval_days=interval, last_touch=last,
                      history_30d=history_counts(recent, c["customer_id"], channels, as_of, weeks),
                      cap_free_day=free_day, agent=agent)


def first_touches(touches: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per customer position: the first planned touch (week, day, channel, value) and the number planned."""
    out = pd.DataFrame({"week": np.full(n, -1), "day": np.full(n, -1), "channel": None, "value": np.nan,
                        "touches_planned": 0})
    if touches.empty:
        return out
    first = touches.sort_values(["row", "week"]).drop_duplicates("row")
    idx = first["row"].to_numpy()
    out.loc[idx, ["week", "day", "channel", "value"]] = first[["week", "day", "channel", "value"]].to_numpy()
    counts = touches.groupby("row").size()
    out.loc[counts.index.to_numpy(), "touches_planned"] = counts.to_numpy()
    return out
