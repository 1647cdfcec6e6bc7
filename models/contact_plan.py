"""Contact plan: for each customer, the next channel and date, or why they must not be contacted.

The cadence comes from the playbook (DOMAIN.md, seeds): a per-segment channel preference and interval
(SMS 1-2 a week and at least 6 a month for nurturing; quote follow-up within 24 hours, then every few
days; scheduled visits; events for high-value segments). Consent (do-not-call, do-not-SMS), opt-outs and
recent complaints are honoured, and per-channel frequency caps are counted from the most recent
contacts, so the plan never proposes a touch that would exceed a cap: it moves the date instead.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.intake.keys import mapped, positions
from models.segments import QUADRANTS, TIERS

CAP_WINDOWS_DAYS = (7, 30)  # the frequency caps count touches in these trailing windows
CONSENT_BLOCKS = {"do_not_call": "phone", "do_not_sms": "sms"}  # consent flag -> channel it forbids


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cadence(_Strict):
    channels: list[str] = Field(min_length=1)  # in order of preference
    interval_days: int = Field(ge=1)           # days between touches


class QuoteFollowup(_Strict):
    channels: list[str] = Field(min_length=1)
    then_every_days: int = Field(ge=1)         # after the first follow-up (due at once: within 24 h)
    active_days: int = Field(ge=1)             # a quote this recent keeps the follow-up cadence


class Cap(_Strict):
    per_7d: int = Field(ge=1)
    per_30d: int = Field(ge=1)


class CapacityParams(_Strict):
    """What the sales force can do in a week: agent-led channels are limited, batch channels are not."""

    agents: int = Field(ge=1)
    per_agent_per_week: dict[str, float]       # e.g. phone: 8, visit: 2

    def weekly(self) -> dict[str, int]:
        return {ch: int(self.agents * n) for ch, n in self.per_agent_per_week.items()}

    @property
    def total_weekly(self) -> int:
        return int(sum(self.weekly().values()))


class PlanParams(_Strict):
    cadence: dict[str, Cadence]                # per ML quadrant
    quote_followup: QuoteFollowup
    caps: dict[str, Cap]                       # per channel; a channel without a cap is not capped
    tier_interval_multiple: dict[str, float]   # P1..P4: lower priority, longer intervals
    channel_min_tier: dict[str, str]           # e.g. visit: P2 -> visits only for P1 and P2
    complaint_suppress_days: int = Field(ge=0)
    weeks: int = Field(default=4, ge=1, le=13)  # planning weeks; each is one allocation under capacity
    solver: Literal["auto", "exact", "prices"] = "auto"  # exact (HiGHS) on books that fit, else prices
    per_agent: bool = True                     # also cap each agent's week when the data names agents

    @model_validator(mode="after")
    def _complete(self) -> PlanParams:
        if set(self.cadence) != set(QUADRANTS):
            raise ValueError(f"cadence needs exactly the quadrants {list(QUADRANTS)}, got {sorted(self.cadence)}")
        if set(self.tier_interval_multiple) != set(TIERS):
            raise ValueError(f"tier_interval_multiple needs exactly {list(TIERS)}")
        bad = {c: t for c, t in self.channel_min_tier.items() if t not in TIERS}
        if bad:
            raise ValueError(f"channel_min_tier values must be one of {list(TIERS)}: {bad}")
        return self

    def channels(self) -> set[str]:
        out = set(self.quote_followup.channels)
        for c in self.cadence.values():
            out |= set(c.channels)
        return out


PLAN_COLUMNS = ["customer_id", "channel", "next_contact_date", "plan_reason", "suppressed", "suppress_reason"]


def _first_free(full: dict[int, int], w: int) -> int:
    """The first week at or after ``w`` that is not full (union-find with path compression)."""
    root = w
    while root in full:
        root = full[root]
    while w in full and full[w] != root:
        full[w], w = root, full[w]
    return root


def schedule_capacity(planned: pd.DataFrame, priority: np.ndarray, as_of: dt.date, weekly: dict[str, int],
                      ) -> pd.DataFrame:
    """Spread agent-led touches over weeks so no channel exceeds its weekly capacity.

    Weeks start at as-of (days 0-6 are week 0). Due quote follow-ups are served first (within 24 hours is
    the playbook's rule), then customers in order of priority: each takes the
    first week, on or after the week their touch is due, with a free slot on its channel, and the date
    moves to that week's first day if it was earlier. Rows without a capped channel are left alone.
    """
    out = planned.copy()
    start = pd.Timestamp(as_of)
    due = pd.to_datetime(out["next_contact_date"])
    week = ((due - start).dt.days // 7).to_numpy()
    urgent = (out["plan_reason"] == "quote_followup_due").to_numpy() if "plan_reason" in out else \
        np.zeros(len(out), bool)
    order = np.lexsort((-np.asarray(priority, float), ~urgent))  # due quote follow-ups first, then by priority
    dates = due.to_numpy().copy()
    channels = out["channel"].to_numpy()
    moved = np.full(len(out), -1, np.int64)  # the week a touch moves to (-1: stays); dated once after the loop
    for ch, cap in weekly.items():
        if cap <= 0:
            continue
        used: dict[int, int] = {}
        full: dict[int, int] = {}  # full week -> a later week to look at next (path-compressed)
        for i in order[channels[order] == ch]:
            w = _first_free(full, int(week[i]))
            used[w] = used.get(w, 0) + 1
            if used[w] >= cap:
                full[w] = w + 1
            if w != week[i]:
                moved[i] = w
    shift = moved >= 0  # a week's first day: as-of plus whole weeks (a Timestamp a row was 9 s at 1M customers)
    dates[shift] = np.datetime64(start) + (7 * moved[shift]).astype("timedelta64[D]")
    out["next_contact_date"] = pd.to_datetime(dates).date
    return out


def suppression(customers: pd.DataFrame, p: PlanParams) -> pd.Series:
    """Why a customer must not be contacted now ('' when they may): opt-out, then a recent complaint."""
    opted = customers["opted_out"].fillna(False).astype(bool).to_numpy()
    days = customers["days_since_last_complaint"].astype("float64").to_numpy()
    complained = np.nan_to_num(days, nan=np.inf) <= p.complaint_suppress_days
    reason = np.select([opted, complained], ["opt_out", f"complaint_within_{p.complaint_suppress_days}d"], "")
    return pd.Series(reason, index=customers.index)


def cap_free_dates(recent: pd.DataFrame, caps: dict[str, Cap]) -> pd.DataFrame:
    """Per (customer, channel): the first date a new touch keeps both caps.

    ``recent``: one row per past outbound touch with customer_id, channel, date (all before the plan
    starts). A touch on day d is allowed when fewer than ``per_7d`` touches fall in [d-7, d) and fewer
    than ``per_30d`` in [d-30, d); with only past touches that is d >= (k-th most recent touch) + 8 days
    (resp. + 31), k being the cap.
    """
    if recent.empty:
        return pd.DataFrame(columns=["customer_id", "channel", "free_date"])
    r = recent[recent["channel"].isin(list(caps))].copy()
    r["date"] = pd.to_datetime(r["date"])
    r["rank"] = r.groupby(["customer_id", "channel"])["date"].rank(method="first", ascending=False)
    k7 = r["channel"].map({c: v.per_7d for c, v in caps.items()})
    k30 = r["channel"].map({c: v.per_30d for c, v in caps.items()})
    free7 = r["date"].where(r["rank"] == k7) + pd.Timedelta(days=8)
    free30 = r["date"].where(r["rank"] == k30) + pd.Timedelta(days=31)
    r["free_date"] = pd.concat([free7, free30], axis=1).max(axis=1)
    out = r.groupby(["customer_id", "channel"], as_index=False)["free_date"].max()
    return out[out["free_date"].notna()]


def plan(customers: pd.DataFrame, recent: pd.DataFrame, as_of: dt.date, p: PlanParams) -> pd.DataFrame:
    """The next touch per customer.

    ``customers`` (one row each): customer_id, ml_quadrant, priority_tier, opted_out,
    days_since_last_complaint, open_quote, days_since_last_quote, last_outbound_date, do_not_call,
    do_not_sms. ``recent``: past outbound touches (customer_id, channel, date) in the last 30 days at least.
    The earliest date is as-of for an open quote (follow-up is due within 24 hours), else the last outbound
    touch plus the cadence interval (times the tier's multiple). Among the permitted channels, the one
    free soonest under the caps is chosen, ties going to the segment's preference order.
    """
    start = pd.Timestamp(as_of)
    c = customers.reset_index(drop=True)
    reason = suppression(c, p)
    open_quote = c["open_quote"].fillna(False).astype(bool).to_numpy()
    quote_days = np.nan_to_num(c["days_since_last_quote"].astype("float64").to_numpy(), nan=np.inf)
    quoting = open_quote | (quote_days <= p.quote_followup.active_days)
    mult = mapped(c["priority_tier"], p.tier_interval_multiple).astype(float).to_numpy()
    cadence = mapped(c["ml_quadrant"], {q: v.interval_days for q, v in p.cadence.items()}).astype(float)
    interval = np.where(quoting, p.quote_followup.then_every_days, cadence * mult)
    last = pd.to_datetime(c["last_outbound_date"])
    earliest = (last + pd.to_timedelta(np.ceil(interval), unit="D")).where(last.notna(), start)
    earliest = earliest.where(earliest > start, start).where(~open_quote, start)
    why = np.where(open_quote, "quote_followup_due", np.where(
        quoting, f"quote_followup_every_{p.quote_followup.then_every_days}d",
        "cadence_" + c["ml_quadrant"].astype(str) + "_every_" + pd.Series(np.ceil(interval)).astype(int).astype(str)
        + "d"))
    rows, channel, date = _soonest_channel(c, quoting, earliest.to_numpy(), recent, p)
    out = pd.DataFrame({"customer_id": c["customer_id"], "channel": None, "next_contact_date": pd.NaT,
                        "plan_reason": why, "suppressed": reason != "", "suppress_reason": reason})
    out.loc[rows, "channel"] = channel
    out.loc[rows, "next_contact_date"] = date
    no_channel = out["channel"].isna() & ~out["suppressed"]
    out.loc[no_channel, ["suppressed", "suppress_reason"]] = [True, "no_permitted_channel"]
    out.loc[out["suppressed"], ["channel", "next_contact_date"]] = [None, pd.NaT]
    out.loc[out["suppressed"], "plan_reason"] = ""
    out["next_contact_date"] = pd.to_datetime(out["next_contact_date"]).dt.date
    return out[PLAN_COLUMNS]


def _soonest_channel(c: pd.DataFrame, quoting: np.ndarray, earliest: np.ndarray, recent: pd.DataFrame,
                     p: PlanParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer (row of ``c``) with a permitted channel: the row, the channel free soonest under the caps
    (ties to the segment's preference order) and its date, ``max(earliest, the caps' first free date)``.

    Candidates are a (customers x preference) matrix of channel codes, not a frame of one row per candidate
    joined to the caps' dates by customer id: at 5M customers that frame held 15M Python strings."""
    n = len(c)
    lists = {q: v.channels for q, v in p.cadence.items()}
    names = list(dict.fromkeys([ch for v in lists.values() for ch in v] + list(p.quote_followup.channels)))
    code = {ch: i for i, ch in enumerate(names)}
    width = max(len(v) for v in [*lists.values(), p.quote_followup.channels])
    cand = np.full((n, width), -1, np.int64)  # channel code per preference slot, -1: none
    quadrant = c["ml_quadrant"].to_numpy(object)
    for q, chans in lists.items():
        cand[(quadrant == q) & ~quoting, :len(chans)] = [code[ch] for ch in chans]
    cand[quoting, :len(p.quote_followup.channels)] = [code[ch] for ch in p.quote_followup.channels]
    allowed = cand >= 0
    tier_rank = mapped(c["priority_tier"], {t: i for i, t in enumerate(TIERS)}).astype(float).to_numpy()
    for flag, ch in CONSENT_BLOCKS.items():
        if ch in code:
            allowed &= ~((cand == code[ch]) & c[flag].fillna(False).astype(bool).to_numpy()[:, None])
    for ch, min_tier in p.channel_min_tier.items():
        if ch in code:
            allowed &= ~((cand == code[ch]) & (tier_rank > TIERS.index(min_tier))[:, None])
    free = np.full((n, len(names)), np.datetime64("NaT"), earliest.dtype)  # the caps' first free date
    caps = cap_free_dates(recent, p.caps)
    caps = caps[caps["channel"].isin(names)]
    at = positions(caps["customer_id"], c["customer_id"])
    found = at >= 0
    free[at[found], caps["channel"].map(code).to_numpy(np.int64)[found]] = \
        pd.to_datetime(caps["free_date"]).to_numpy().astype(earliest.dtype)[found]
    slot_free = np.take_along_axis(free, np.maximum(cand, 0), axis=1)
    start = np.broadcast_to(earliest[:, None], cand.shape)
    date = np.where(np.isnat(slot_free) | (slot_free < start), start, slot_free)
    key = np.where(allowed, date.view(np.int64), np.iinfo(np.int64).max)
    best = np.argmin(key, axis=1)  # the first slot of the soonest date: preference breaks ties
    rows = np.flatnonzero(allowed.any(axis=1))
    return (rows, np.array(names, dtype=object)[cand[rows, best[rows]]], date[rows, best[rows]])
