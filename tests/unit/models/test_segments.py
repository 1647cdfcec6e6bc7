"""Rule segments, contact value, cut-point alignment and freezing, tiers, suppression and frequency caps."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models import contact_plan as cp
from models import segments as sg
from pipelines.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
QUAD = PARAMS.rules.quadrant
RULES = PARAMS.rules
PLAN = PARAMS.segment.plan


def _book(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows with the columns the rules read, and model scores correlated with them."""
    rng = np.random.default_rng(seed)
    income = rng.integers(0, 5, n)
    premium = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(8.5, 1.0, n))
    frame = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(n)], "income_rank": income.astype(float),
        "premium_inforce": premium, "n_inforce": (premium > 0).astype(int),
        "n_policies_ever": ((premium > 0) | (rng.random(n) < 0.2)).astype(int),
        "tenure_months": rng.integers(0, 120, n), "days_since_last_answered": rng.choice([5, 60, 400, np.nan], n),
        **{f"n_{o}_90d": rng.poisson(0.3, n) for o in ("reached", "interested", "quote", "appointment", "purchase",
                                                        "contacts")},
    })
    p = 1 / (1 + np.exp(-(-4 + 0.4 * income + 0.8 * frame["n_reached_90d"] + rng.normal(0, 0.5, n))))
    scores = pd.DataFrame({"p_purchase": p, "p_lapse": np.where(premium > 0, rng.beta(1, 30, n), 0.0),
                           "expected_premium": np.exp(8 + 0.3 * income + rng.normal(0, 0.3, n))})
    return frame, scores


def _flat_cost(q: np.ndarray) -> np.ndarray:
    return np.full(len(q), 5.0)


def test_rule_segments_follow_the_thresholds() -> None:
    frame = pd.DataFrame({"premium_inforce": [30000, 5000, 0, 1000, 0], "income_rank": [0, 0, 3, 0, np.nan],
                          "days_since_last_answered": [3, 100, 500, np.nan, 30], "n_inforce": [1, 1, 0, 1, 0],
                          "n_policies_ever": [1, 1, 2, 1, 0], "tenure_months": [40, 2, 0, 1, 0],
                          **{f"n_{o}_90d": [1, 0, 0, 0, 0] for o in ("reached", "interested", "quote", "appointment",
                                                                      "purchase")}})
    seg = sg.rule_segments(frame, QUAD, RULES)
    assert seg["value_tier"].tolist() == ["high", "general", "potential", "low", "low"]
    assert seg["closeness"].tolist() == ["hot", "warm", "cold", "cold", "hot"]
    assert seg["behaviour"].tolist() == ["active", "active", "lapsed", "active", "prospect"]
    assert seg["rule_quadrant"].tolist()[0] == "pamper"


def test_ml_quadrants_have_the_rule_quadrant_sizes() -> None:
    frame, scores = _book()
    out, cuts = sg.assign(frame, scores, QUAD, RULES, PARAMS.segment.value, PARAMS.segment.tiers, _flat_cost)
    rule = out["rule_quadrant"].value_counts()
    ml = out["ml_quadrant"].value_counts()
    for q in sg.QUADRANTS:
        assert ml.get(q, 0) == rule.get(q, 0), (q, ml.to_dict(), rule.to_dict())
    assert set(out["ml_quadrant"]) <= set(sg.QUADRANTS) and set(out["priority_tier"]) <= set(sg.TIERS)
    shares = out["priority_tier"].value_counts(normalize=True).reindex(list(sg.TIERS)).to_numpy()
    np.testing.assert_allclose(shares, PARAMS.segment.tiers.shares, atol=2 / len(frame))
    # tiers are ordered by contact value: every P1 is worth at least every P2, and so on
    v = out.groupby("priority_tier")["priority_value"].agg(["min", "max"]).reindex(list(sg.TIERS))
    assert (v["min"].to_numpy()[:-1] >= v["max"].to_numpy()[1:]).all()


def test_frozen_cutpoints_keep_their_meaning_on_a_new_population() -> None:
    frame, scores = _book(seed=1)
    _, cuts = sg.assign(frame, scores, QUAD, RULES, PARAMS.segment.value, PARAMS.segment.tiers, _flat_cost)
    frame2, scores2 = _book(seed=2)
    scores2["p_purchase"] *= 1.5  # the next month buys more
    frozen, same = sg.assign(frame2, scores2, QUAD, RULES, PARAMS.segment.value, PARAMS.segment.tiers, _flat_cost,
                             cuts)
    assert same == cuts
    p1 = frozen["priority_tier"] == "P1"
    assert (frozen.loc[p1, "priority_value"] >= cuts.tiers[0]).all()
    assert (frozen.loc[~p1, "priority_value"] < cuts.tiers[0]).all()
    assert p1.mean() > PARAMS.segment.tiers.shares[0]  # more customers clear the frozen P1 bar
    refit, recut = sg.assign(frame2, scores2, QUAD, RULES, PARAMS.segment.value, PARAMS.segment.tiers, _flat_cost)
    assert recut != cuts and (refit["priority_tier"] == "P1").mean() == pytest.approx(0.05, abs=1e-3)


def test_capacity_sizing() -> None:
    v = np.concatenate([np.linspace(1000, 1, 600), -np.linspace(1, 100, 400)])
    tp = PARAMS.segment.tiers.model_copy(update={"sizing": "capacity", "weeks": 1, "p2_capacity_multiple": 2})
    t = sg.tiers(v, sg.fit_tier_cuts(v, tp, weekly_capacity=50))
    assert (t == "P1").sum() == 50 and (t == "P2").sum() == 100
    assert (t == "P3").sum() == 450 and (t[v <= 0] == "P4").all()


def test_contact_value_worked_example() -> None:
    """The example in docs/segments.md."""
    v = PARAMS.segment.value
    out = sg.contact_value(np.array([0.08]), np.array([12000.0]), np.array([0.05]), np.array([20000.0]),
                           np.array([v.channel_cost["phone"]]), v)
    assert out["value_sale"].iloc[0] == pytest.approx(0.08 * 12000 * v.margin_rate)
    assert out["value_retention"].iloc[0] == pytest.approx(0.05 * 20000 * v.lapse_loss_rate * v.save_rate)
    assert out["contact_value"].iloc[0] == pytest.approx(192 + 250 - 8)


def test_backtest_tables_and_monotonicity() -> None:
    frame, scores = _book(seed=3)
    out, _ = sg.assign(frame, scores, QUAD, RULES, PARAMS.segment.value, PARAMS.segment.tiers, _flat_cost)
    rng = np.random.default_rng(0)
    out["purchase_h"] = (rng.random(len(out)) < out["p_purchase"]).astype(float)
    out["lapse_h"] = np.where(frame["n_inforce"] > 0, (rng.random(len(out)) < out["p_lapse"]).astype(float), np.nan)
    out["premium_h"] = out["purchase_h"] * out["expected_premium"]
    t = sg.backtest_table(out, "priority_tier", sg.TIERS)
    assert t["customers"].sum() == len(out) and t["priority_tier"].tolist() == list(sg.TIERS)
    assert t["realised_premium"].sum() == pytest.approx(out["premium_h"].sum())
    assert t["expected_purchases"].sum() == pytest.approx(out["p_purchase"].sum())
    assert sg.is_monotone_decreasing([3, 2, 2, 1]) and not sg.is_monotone_decreasing([3, 1, 2])
    rule_t = sg.rule_tiers(-np.arange(len(out)), out["priority_tier"].to_numpy())
    assert (pd.Series(rule_t).value_counts() == out["priority_tier"].value_counts()).all()
    cmp = sg.same_size_comparison(out, (out["priority_tier"] == "P1").to_numpy(), rng.random(len(out)))
    assert cmp["customers_ml"] == cmp["customers_rule"] and cmp["uplift_cny"] > 0


# ---------------------------------------------------------------- contact plan

AS_OF = dt.date(2026, 9, 30)


def _customers(**over: object) -> pd.DataFrame:
    base = {"customer_id": "C1", "ml_quadrant": "develop", "priority_tier": "P1", "opted_out": False,
            "days_since_last_complaint": np.nan, "open_quote": False, "days_since_last_quote": np.nan,
            "last_outbound_date": pd.NaT, "do_not_call": False, "do_not_sms": False}
    return pd.DataFrame([base | over])


def _touches(channel: str, days_ago: list[int], cid: str = "C1") -> pd.DataFrame:
    return pd.DataFrame({"customer_id": cid, "channel": channel,
                         "date": [AS_OF - dt.timedelta(days=d) for d in days_ago]})


NO_TOUCHES = pd.DataFrame(columns=["customer_id", "channel", "date"])


def test_suppression_reasons() -> None:
    c = pd.concat([_customers(customer_id="A", opted_out=True),
                   _customers(customer_id="B", days_since_last_complaint=10.0),
                   _customers(customer_id="C", days_since_last_complaint=400.0),
                   _customers(customer_id="D", ml_quadrant="maintain", do_not_call=True, do_not_sms=True)],
                  ignore_index=True)
    only_phone_sms = PLAN.model_copy(update={"cadence": PLAN.cadence | {"maintain": cp.Cadence(
        channels=["phone", "sms"], interval_days=14)}})
    out = cp.plan(c, NO_TOUCHES, AS_OF, only_phone_sms).set_index("customer_id")
    assert out.loc["A", "suppress_reason"] == "opt_out" and pd.isna(out.loc["A", "next_contact_date"])
    assert out.loc["B", "suppress_reason"].startswith("complaint_within_") and out.loc["B", "channel"] is None
    assert not out.loc["C", "suppressed"] and out.loc["C", "next_contact_date"] == AS_OF
    assert out.loc["D", "suppress_reason"] == "no_permitted_channel"


def test_consent_moves_the_channel() -> None:
    out = cp.plan(_customers(do_not_sms=True), NO_TOUCHES, AS_OF, PLAN)
    assert out["channel"].iloc[0] == PLAN.cadence["develop"].channels[1]  # develop prefers SMS: next one
    out = cp.plan(_customers(open_quote=True, do_not_call=True), NO_TOUCHES, AS_OF, PLAN)
    assert out["channel"].iloc[0] == PLAN.quote_followup.channels[1] and out["next_contact_date"].iloc[0] == AS_OF
    assert out["plan_reason"].iloc[0] == "quote_followup_due"


def test_frequency_caps_push_the_date_or_switch_channel() -> None:
    sms_cap = PLAN.caps["sms"]
    only_sms = PLAN.model_copy(update={"cadence": PLAN.cadence | {"develop": cp.Cadence(channels=["sms"],
                                                                                        interval_days=1)}})
    # two SMS in the last 7 days (the cap): the next one waits until the older leaves the window
    out = cp.plan(_customers(), _touches("sms", [2, 5]), AS_OF, only_sms)
    assert sms_cap.per_7d == 2 and out["next_contact_date"].iloc[0] == AS_OF + dt.timedelta(days=3)
    # and the planned touch really keeps the cap: fewer than per_7d in the 7 days before it
    d = out["next_contact_date"].iloc[0]
    assert sum(d - dt.timedelta(days=7) <= AS_OF - dt.timedelta(days=x) < d for x in [2, 5]) < sms_cap.per_7d
    # the 30-day cap
    out = cp.plan(_customers(), _touches("sms", [8, 10, 12, 14, 16, 18, 20, 22]), AS_OF, only_sms)
    assert out["next_contact_date"].iloc[0] == AS_OF - dt.timedelta(days=22) + dt.timedelta(days=31)
    # with alternatives, a capped preferred channel gives way to the next one, today
    out = cp.plan(_customers(), _touches("sms", [2, 5]), AS_OF, PLAN)
    assert out["channel"].iloc[0] == PLAN.cadence["develop"].channels[1] and out["next_contact_date"].iloc[0] == AS_OF


def test_cadence_interval_and_tier_multiple() -> None:
    last = pd.Timestamp(AS_OF - dt.timedelta(days=2))
    out = cp.plan(_customers(ml_quadrant="pamper", priority_tier="P1", last_outbound_date=last), NO_TOUCHES,
                  AS_OF, PLAN)
    assert out["next_contact_date"].iloc[0] == (last + pd.Timedelta(days=14)).date()
    assert out["channel"].iloc[0] == "visit"
    out = cp.plan(_customers(ml_quadrant="pamper", priority_tier="P4", last_outbound_date=last), NO_TOUCHES,
                  AS_OF, PLAN)
    assert out["next_contact_date"].iloc[0] == (last + pd.Timedelta(days=14 * 4)).date()
    assert out["channel"].iloc[0] == "phone"  # visits are for P1-P2


def test_plan_params_are_checked() -> None:
    with pytest.raises(ValueError, match="quadrants"):
        cp.PlanParams(**(PLAN.model_dump() | {"cadence": {"pamper": {"channels": ["sms"], "interval_days": 3}}}))


def test_weekly_capacity_spreads_agent_touches_by_priority() -> None:
    n = 25
    planned = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "channel": ["visit"] * 20 + ["sms"] * 5,
                            "next_contact_date": [AS_OF] * 18 + [AS_OF + dt.timedelta(days=9)] * 2 + [AS_OF] * 5})
    priority = np.arange(n, 0, -1).astype(float)  # row 0 first
    out = cp.schedule_capacity(planned, priority, AS_OF, {"visit": 8})
    weeks = (pd.to_datetime(out["next_contact_date"]) - pd.Timestamp(AS_OF)).dt.days // 7
    visits = weeks[out["channel"] == "visit"]
    assert visits.value_counts().max() <= 8 and len(visits) == 20
    assert (weeks.iloc[:8] == 0).all() and (weeks.iloc[8:16] == 1).all()  # highest priority first
    # rows due in week 1 with lower priority than the week-0 overflow: still on or after their own due date
    assert (pd.to_datetime(out["next_contact_date"]) >= pd.to_datetime(planned["next_contact_date"])).all()
    assert (out.loc[out["channel"] == "sms", "next_contact_date"] == AS_OF).all()  # batch channels uncapped
    # a due quote follow-up jumps the queue even with the lowest priority
    planned["plan_reason"] = ["cadence"] * 17 + ["quote_followup_due"] + ["cadence"] * 7
    out = cp.schedule_capacity(planned, priority, AS_OF, {"visit": 8})
    assert out["next_contact_date"].iloc[17] == AS_OF and out["next_contact_date"].iloc[7] > AS_OF


def test_incremental_contact_value_worked_example() -> None:
    """docs/segments.md section 2: visit vs phone for one customer."""
    v = PARAMS.segment.value
    cost = np.array([v.channel_cost["visit"], v.channel_cost["phone"]])
    value = sg.incremental_value(np.array([[0.031, 0.005]]), np.array([[-0.004, -0.001]]),
                                 np.array([12_000 * v.margin_rate]), np.array([20_000 * v.lapse_loss_rate]), cost)
    assert value[0].tolist() == pytest.approx([4.4, 24.0])
    from models.weekly_plan import plan_reason

    assert plan_reason("phone", 0.005, 12_000 * v.margin_rate, -0.001, 20_000.0, 8) == \
        "phone: +0.5 pt purchase, -0.1 pt lapse, +32 CNY expected, cost 8"


def test_best_arm_is_the_largest_net_value_or_none() -> None:
    tau = np.array([[0.05, 0.01], [0.001, 0.002], [0.0, 0.03]])
    out = sg.best_arm(tau, ["call", "sms"], 100.0, {"call": 2.0, "sms": 0.1})
    # values: call 3.0 / sms 0.9; call -1.9 / sms 0.1; call -2 / sms 2.9
    assert out["recommended_arm"].tolist() == ["call", "sms", "sms"]
    assert out["arm_value"].tolist() == pytest.approx([3.0, 0.1, 2.9])
    none = sg.best_arm(np.array([[0.0, 0.0]]), ["call", "sms"], 100.0, {"call": 2.0, "sms": 0.1})
    assert none["recommended_arm"].isna().all() and none["arm_uplift"].isna().all()


def test_the_rule_inputs_are_the_columns_the_rules_read() -> None:
    """A snapshot narrowed to ``RULE_INPUTS`` (segment keeps only these of the as-of snapshot once it is scored)
    segments as the whole rows do, and each of them is needed."""
    frame, scores = _book(500, seed=3)
    whole = sg.rule_segments(frame, QUAD, RULES)
    pd.testing.assert_frame_equal(sg.rule_segments(frame[list(sg.RULE_INPUTS)], QUAD, RULES), whole)
    for c in sg.RULE_INPUTS:
        with pytest.raises(KeyError):
            sg.rule_segments(frame[[k for k in sg.RULE_INPUTS if k != c]], QUAD, RULES)
