"""Treatments point-in-time, the effect learners on data with a known effect, and the Qini evaluation."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.snapshots import treatments as tr
from models import transfer
from models import uplift as up
from pipelines.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")


def _contacts(rows: list[tuple[str, str, str, str, str, bool, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "contact_ts", "channel", "direction", "purpose", "holdout",
                                       "campaign_id", "outcome"]).assign(contact_ts=lambda d: pd.to_datetime(
                                           d["contact_ts"]))


def test_treatment_is_the_first_selling_touch_after_the_snapshot_and_never_before() -> None:
    s = dt.date(2026, 1, 1)
    con = duckdb.connect()
    con.register("contacts", _contacts([
        ("A", "2025-12-31 10:00", "visit", "outbound", "sales", False, None, "reached"),   # before s: history
        ("A", "2026-01-03 10:00", "phone", "outbound", "sales", False, None, "reached"),   # the treatment
        ("A", "2026-01-05 10:00", "visit", "outbound", "sales", False, None, "reached"),   # later: not first
        ("B", "2026-01-02 10:00", "sms", "outbound", "service", False, None, "reached"),   # not selling: excluded
        ("C", "2026-01-02 10:00", "sms", "outbound", "sales", True, "CMP1", None),          # holdout: control
        ("D", "2026-01-02 10:00", "sms", "outbound", "sales", False, "CMP1", "no_answer"),  # campaign: treated
        ("E", "2026-01-20 10:00", "wechat", "outbound", "sales", False, None, "reached"),  # after the 7 days
        ("F", "2026-01-02 10:00", "phone", "inbound", "service", False, None, "reached"),  # inbound: no touch
    ]))
    rows = pd.DataFrame({"snapshot_date": [s] * 7, "customer_id": list("ABCDEFG")})
    out = tr.assign_treatment(rows, tr.treatments(con, [s], 7, 30)).set_index("customer_id")
    assert out.loc["A", "treatment"] == "phone"
    assert pd.isna(out.loc["B", "treatment"])
    assert out.loc["C", "treatment"] == "none" and out.loc["C", "arm_sms"] == 0
    assert out.loc["D", "treatment"] == "sms" and out.loc["D", "arm_sms"] == 1
    assert out.loc["E", "treatment"] == "none"  # the wechat touch is outside the treatment window
    assert out.loc["F", "treatment"] == "none" and out.loc["G", "treatment"] == "none"


def test_direct_purchase_drops_sales_closed_by_a_quote_followup() -> None:
    s = dt.date(2026, 1, 1)
    con = duckdb.connect()
    con.register("contacts", _contacts([
        ("A", "2026-01-10 10:00", "phone", "outbound", "quote_followup", False, None, "purchase"),
        ("B", "2026-01-10 10:00", "visit", "outbound", "sales", False, None, "purchase"),
    ]))
    rows = pd.DataFrame({"snapshot_date": [s] * 3, "customer_id": ["A", "B", "C"], "purchase_h": [1.0, 1.0, np.nan]})
    label = tr.direct_purchase(con, rows, 90)
    assert label.iloc[0] == 0 and label.iloc[1] == 1 and np.isnan(label.iloc[2])


def _experiment(n: int, seed: int) -> pd.DataFrame:
    """Rows with a baseline probability and a true log-odds effect: visit +1.2, phone +0.4, sms 0; the phone
    effect halves for customers touched recently (the modifier)."""
    rng = np.random.default_rng(seed)
    recent = rng.poisson(1.0, n).astype(float)
    base = 1 / (1 + np.exp(-rng.normal(-3.2, 0.8, n)))
    treat = rng.choice(["none", "visit", "phone", "sms"], n, p=[0.55, 0.15, 0.15, 0.15])
    shift = np.select([treat == "visit", treat == "phone"], [1.2, 0.4 / (1 + recent)], 0.0)
    logit = np.log(base / (1 - base)) + shift
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame({"treatment": treat, "y": y, "base": base, "n_reached_30d": recent})


def test_learner_recovers_the_channel_order_and_size_of_a_known_effect() -> None:
    learner = PARAMS.uplift.purchase.model_copy(update={"modifiers": ["n_reached_30d"], "min_child_samples": 200})
    train, valid = _experiment(120_000, 1), _experiment(30_000, 2)
    channels = ["phone", "sms", "visit"]
    model = up.fit_effects(train, valid, "y", (train["base"].to_numpy(), valid["base"].to_numpy()), channels,
                           channels, learner, "purchase", seed=1)
    test = _experiment(20_000, 3)
    tau = up.effects(model, test, test["base"].to_numpy(), channels)
    base = test["base"].to_numpy()
    true_visit = 1 / (1 + np.exp(-(np.log(base / (1 - base)) + 1.2))) - base
    assert tau[:, 2].mean() == pytest.approx(true_visit.mean(), rel=0.25)
    assert tau[:, 2].mean() > tau[:, 0].mean() > abs(tau[:, 1].mean())
    assert np.corrcoef(tau[:, 2], true_visit)[0, 1] > 0.8
    # the phone effect is larger for customers not touched recently
    assert tau[test["n_reached_30d"] == 0, 0].mean() > tau[test["n_reached_30d"] >= 2, 0].mean()


def test_unsupported_channels_get_no_effect_and_transfer_borrows_the_purchase_pattern() -> None:
    learner = PARAMS.uplift.lapse.model_copy(update={"modifiers": ["n_reached_30d"], "max_rounds": 50})
    train, valid = _experiment(40_000, 4), _experiment(10_000, 5)
    model = up.fit_effects(train, valid, "y", (train["base"].to_numpy(), valid["base"].to_numpy()),
                           ["phone", "sms", "visit"], ["visit"], learner, "lapse", seed=1)
    assert model.relative_effect["phone"] == 0.0 and model.relative_effect["sms"] == 0.0
    purchase_like = up.EffectModel("purchase", model.booster, model.modifiers, model.channels, ["visit"],
                                   "learner", {"visit": 0.5}, {"visit": 100})
    assert purchase_like.relative_effect["visit"] == 0.5
    lapse = up.with_transfer(model, transfer.TransferFit(-0.1, 1.0, 0.0, 100, 5, {}))  # strict proportionality
    rel = np.array([[0.1, 0.0, 0.6], [0.2, 0.0, 1.2]])
    tau = up.effects(lapse, pd.DataFrame(index=[0, 1]), np.array([0.02, 0.04]), ["phone", "sms", "visit"], rel)
    assert tau[1, 2] == pytest.approx(4 * tau[0, 2])  # twice the relative effect, twice the baseline
    assert tau[0, 2] == pytest.approx(-0.1 * 0.6 * 0.02)
    assert (tau[:, 1] == 0).all()  # no purchase effect: no lapse effect claimed
    flat = up.with_transfer(model, transfer.TransferFit(-0.1, 0.0, 0.0, 100, 5, {}))  # elasticity 0
    tau0 = up.effects(flat, pd.DataFrame(index=[0, 1]), np.array([0.02, 0.04]), ["phone", "sms", "visit"], rel)
    assert tau0[0, 0] == pytest.approx(tau0[0, 2]) == pytest.approx(-0.1 * 0.02)
    restored = up.EffectModel.from_meta(lapse.booster, lapse.meta())
    assert (restored.kappa, restored.elasticity, restored.centre) == (-0.1, 1.0, 0.0)


def test_qini_ranks_a_true_uplift_score_above_random() -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    score = rng.random(n)
    treated = (rng.random(n) < 0.5).astype(int)
    y = (rng.random(n) < 0.02 + 0.06 * score * treated).astype(int)
    report = up.qini_report(y, treated, {"uplift": score, "flat": np.zeros(n)})
    assert report["qini_uplift"] > report["qini_random"]
    assert report["uplift_at_30pct_uplift"] > report["ate"]
    curve = up.qini_points(y, treated, score, 20)
    assert curve["share"].iloc[-1] == pytest.approx(1.0) and len(curve) <= 21


@pytest.mark.parametrize("interactions", ["additive", "full"])
def test_channel_differences_read_off_a_few_rows_only_for_an_additive_learner(interactions: str) -> None:
    """An additive learner's channels differ by one number for every row, so effects() predicts one channel
    and shifts it; a learner with full interactions is not additive and every channel is predicted."""
    learner = PARAMS.uplift.purchase.model_copy(update={
        "modifiers": ["n_reached_30d", "noise"], "min_child_samples": 50, "max_rounds": 80, "learning_rate": 0.1,
        "interactions": interactions})
    train, valid, test = (_experiment(n, s).assign(noise=np.random.default_rng(s).normal(size=n))
                          for n, s in ((30_000, 6), (8_000, 7), (3_000, 8)))
    channels = ["phone", "sms", "visit"]
    model = up.fit_effects(train, valid, "y", (train["base"].to_numpy(), valid["base"].to_numpy()), channels,
                           channels, learner, "purchase", seed=1)
    assert up.channel_additive(model) == (interactions == "additive")
    base = test["base"].to_numpy()
    direct = np.column_stack([up._prob(model, test, up.logit(base), c) - up._prob(model, test, up.logit(base), "none")
                              for c in channels])
    tau = up.effects(model, test, base, channels)
    np.testing.assert_allclose(tau, direct, rtol=0, atol=1e-12)
    diff = [up._raw(model, test, c) - up._raw(model, test, "phone") for c in ("sms", "visit")]
    assert (np.ptp(diff[1]) < 1e-12) == (interactions == "additive")  # the full learner's visit effect varies
    # in chunks sharing one ``shifts`` (segment scores the as-of snapshot so), bit for bit the whole rows' effects;
    # each chunk reading its own constants would differ in the last digits
    shifts: dict[str, float] = {}
    cut = [0, 700, 1500, 2200, len(test)]
    parts = [up.effects(model, test.iloc[a:b], base[a:b], channels, shifts=shifts)
             for a, b in zip(cut, cut[1:], strict=False)]
    np.testing.assert_array_equal(np.concatenate(parts), tau)
    assert sorted(shifts) == (["sms", "visit"] if interactions == "additive" else [])
