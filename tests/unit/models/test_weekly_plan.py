"""The weekly contact plan: consent, suppression, tiers, caps, intervals and capacity hold in every week."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import allocation, plan_eval
from models import weekly_plan as wp
from models.segments import QUADRANTS, TIERS
from pipelines.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
PLAN = PARAMS.segment.plan
CHANNELS = ("phone", "sms", "wechat", "email", "letter", "visit", "event")
AS_OF = dt.date(2026, 9, 30)


def _customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    c = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "priority_tier": rng.choice(list(TIERS), n), "ml_quadrant": rng.choice(list(QUADRANTS), n),
        "opted_out": rng.random(n) < 0.05,
        "days_since_last_complaint": np.where(rng.random(n) < 0.05, rng.integers(1, 200, n), np.nan),
        "open_quote": rng.random(n) < 0.03, "days_since_last_quote": np.where(rng.random(n) < 0.1, 5.0, np.nan),
        "last_outbound_date": [AS_OF - dt.timedelta(days=int(d)) if d < 60 else None
                               for d in rng.integers(1, 120, n)],
        "do_not_call": rng.random(n) < 0.1, "do_not_sms": rng.random(n) < 0.1,
    })
    value = rng.normal(0, 30, (n, len(CHANNELS))) + np.array([5, 1, 2, 0, -3, -60, -150])
    recent = pd.DataFrame({"customer_id": rng.choice(c["customer_id"], 3 * n),
                           "channel": rng.choice(list(CHANNELS), 3 * n),
                           "date": [AS_OF - dt.timedelta(days=int(d)) for d in rng.integers(1, 31, 3 * n)]})
    return c, value, recent


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(20, 1500), agents=st.booleans())
def test_every_week_keeps_consent_suppression_tiers_caps_intervals_and_capacity(seed: int, n: int,
                                                                              agents: bool) -> None:
    c, value, recent = _customers(n, seed)
    agent = np.random.default_rng(seed).integers(-1, 8, n) if agents else None
    weeks = 4
    inputs = wp.build_inputs(c, value, CHANNELS, recent, AS_OF, PLAN, weeks, agent)
    capacity = {"phone": max(1, n // 20), "visit": max(1, n // 100), "event": 1}
    agent_caps = {"phone": 3, "visit": 1, "event": 1}
    touches = wp.plan_weeks(inputs, weeks, capacity, agent_caps, PLAN.caps)
    cid = c["customer_id"].to_numpy()
    t = touches.assign(customer_id=cid[touches["row"]])
    assert len(t) > 0
    # consent and suppression
    blocked_call = set(cid[c["do_not_call"]])
    assert not ((t["channel"] == "phone") & t["customer_id"].isin(blocked_call)).any()
    assert not ((t["channel"] == "sms") & t["customer_id"].isin(set(cid[c["do_not_sms"]]))).any()
    assert not t["customer_id"].isin(set(cid[c["opted_out"]])).any()
    complained = c["days_since_last_complaint"] <= PLAN.complaint_suppress_days
    assert not t["customer_id"].isin(set(cid[complained])).any()
    # channel_min_tier: visits and events for P1-P2 only
    tier = dict(zip(cid, c["priority_tier"], strict=True))
    for ch, min_tier in PLAN.channel_min_tier.items():
        assert all(TIERS.index(tier[x]) <= TIERS.index(min_tier) for x in t.loc[t["channel"] == ch, "customer_id"])
    # capacity every week, overall and per agent
    for (_, ch), k in t.groupby(["week", "channel"]).size().items():
        assert k <= capacity.get(ch, 10**9)
    if agent is not None:
        per = t.assign(agent=agent[t["row"]]).query("agent >= 0").groupby(["week", "agent", "channel"]).size()
        for (_, _, ch), k in per.items():
            assert k <= agent_caps.get(ch, 10**9)
    # at most one touch a week, and the interval since the previous touch (history or plan)
    assert not t.duplicated(["row", "week"]).any()
    last = inputs.last_touch.copy()
    for w in range(weeks):
        rows = t.loc[t["week"] == w, "row"].to_numpy()
        since = 7 * w - np.nan_to_num(last[rows], nan=-np.inf)
        assert (since >= inputs.interval_days[rows]).all()
        last[rows] = 7 * w
    # only touches worth more than they cost
    assert (t["value"] > 0).all()


def test_the_30_day_cap_counts_history_and_earlier_planned_weeks(caplog) -> None:
    c, _, _ = _customers(1, 0)
    c = c.assign(opted_out=False, days_since_last_complaint=np.nan, open_quote=False, days_since_last_quote=np.nan,
                 last_outbound_date=None, do_not_call=False, do_not_sms=False, priority_tier="P1",
                 ml_quadrant="develop")
    value = np.full((1, len(CHANNELS)), -1.0)
    value[0, CHANNELS.index("letter")] = 10.0  # only letters pay; letters are capped at 2 per 30 days
    recent = pd.DataFrame({"customer_id": ["C00000"], "channel": ["letter"], "date": [AS_OF - dt.timedelta(days=20)]})
    inputs = wp.build_inputs(c, value, CHANNELS, recent, AS_OF, PLAN, 6, None)
    with caplog.at_level("INFO", logger="models.weekly_plan"):
        touches = wp.plan_weeks(inputs, 6, {}, {}, PLAN.caps)
    # a long plan says how far it is, week by week, with the touches each week got
    said = [r.getMessage() for r in caplog.records if r.name == "models.weekly_plan"]
    assert [m.split(":")[0] for m in said] == [f"planned week {w} of 6" for w in range(1, 7)]
    assert sum(int(m.split(": ")[1].split(" ")[0]) for m in said) == len(touches)
    days = sorted(touches["day"])
    per_30d = PLAN.caps["letter"].per_30d
    history_day = -20
    for d in days:  # every planned letter keeps the cap counting the history letter and earlier plans
        window = [x for x in [history_day, *days] if d - 30 <= x < d]
        assert len(window) < per_30d
    assert len(days) >= 2


def test_plan_reason_reads_like_an_agent_would_say_it() -> None:
    text = wp.plan_reason("visit", 0.031, 20_000.0, -0.004, 30_000.0, 150.0)
    assert text == "visit: +3.1 pt purchase, -0.4 pt lapse, +740 CNY expected, cost 150"


def test_plan_shares_oracle_is_the_best_and_shares_are_bounded() -> None:
    rng = np.random.default_rng(3)
    true_value = rng.normal(0, 20, (3000, 4)) + np.array([5, 1, -30, -60])
    allowed = rng.random(true_value.shape) > 0.1
    problem = allocation.Problem(np.zeros_like(true_value), ("phone", "sms", "visit", "event"),
                                 {"phone": 200, "visit": 50, "event": 10})
    noisy = true_value + rng.normal(0, 20, true_value.shape)
    plan = allocation.solve(allocation.Problem(np.where(allowed, noisy, -np.inf), problem.channels, problem.capacity))
    out = plan_eval.shares(true_value, allowed, {"plan": plan}, problem, seed=1)
    assert out["oracle"]["share_of_oracle"] == pytest.approx(1.0)
    assert out["random"]["share_of_oracle"] < out["plan"]["share_of_oracle"] <= 1.0 + 1e-12
    assert out["plan"]["touches"] > 0 and 0 <= out["plan"]["negative_value_share"] <= 1
