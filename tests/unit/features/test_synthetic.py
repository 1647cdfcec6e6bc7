"""The synthetic book behaves like a real one: properties, not golden numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from features.simulator.book import (
    OUTBOUND_SALES_CHANNELS,
    SyntheticBook,
    extract_tables,
    simulate_book,
    simulate_history,
    simulate_truth,
)
from pipelines.params import Params


def _tiny(p: Params, **upd):
    sp = p.synthetic()
    size = sp.size.model_copy(update={"n_customers": upd.pop("n", 300), "history_days": 400})
    return sp.model_copy(update={"size": size, "truth_replicates": 1, **upd})


def test_same_seed_same_book_and_other_seed_other_book(small_params: Params) -> None:
    a, b = simulate_book(_tiny(small_params)), simulate_book(_tiny(small_params))
    for name in a.tables():
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name])
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate_book(_tiny(small_params, seed=small_params.generate.seed + 1))
    assert not a.contacts["contact_ts"].equals(c.contacts["contact_ts"])


def test_the_book_and_the_truth_apart_equal_the_book_with_its_truth(small_params: Params) -> None:
    """generate writes the tables without the truth and the truth stage simulates the history again: the tables
    must not depend on whether the truth ran, and the truth alone must be the book's own."""
    sp = _tiny(small_params, truth_replicates=2)
    whole = simulate_book(sp)
    tables, summary = extract_tables(simulate_history(sp), sp)  # what generate writes
    for name, df in whole.tables().items():
        pd.testing.assert_frame_equal(tables[name], df, check_exact=True)
    assert "mean_true_p_purchase" not in summary
    assert {k: v for k, v in whole.summary.items() if k in summary} == summary
    pd.testing.assert_frame_equal(simulate_truth(sp), whole.truth, check_exact=True)
    assert whole.truth["p_purchase"].gt(0).any()


def test_truth_is_a_probability_for_every_customer(small_book: SyntheticBook) -> None:
    t = small_book.truth
    assert t["customer_id"].is_unique
    assert set(t["customer_id"]) == set(small_book.customers["customer_id"])
    prob = t.filter(like="p_")
    assert ((prob >= 0) & (prob <= 1) | prob.isna()).all().all()
    lapse = t.filter(like="p_lapse")
    assert lapse.isna().all(axis=1).equals(~t["holds_in_force"])  # lapse defined for holders only


def test_contacts_raise_purchase_with_channel_specific_effects(small_book: SyntheticBook) -> None:
    t = small_book.truth
    base = t["p_purchase_no_contact"].mean()
    effect = {ch: t[f"p_purchase_{ch}"].mean() - base for ch in OUTBOUND_SALES_CHANNELS}
    assert all(v > 0 for v in effect.values()), effect
    assert effect["visit"] > effect["phone"] > effect["sms"] > 0
    assert effect["visit"] > 2 * effect["email"]
    # business as usual (agents + campaigns) sells more than leaving the book alone
    assert t["p_purchase"].mean() > base


def test_a_touch_lowers_lapse(small_book: SyntheticBook) -> None:
    t = small_book.truth.dropna(subset=["p_lapse"])
    assert t["p_lapse_visit"].mean() < t["p_lapse_no_contact"].mean()


def test_purchase_driven_by_ability_willingness_and_need(small_book: SyntheticBook) -> None:
    t = small_book.truth
    for driver in ("latent_willingness", "latent_need", "latent_ability"):
        rho = spearmanr(t[driver], t["p_purchase_no_contact"]).statistic
        assert rho > 0.1, (driver, rho)


def _prior_touches(co: pd.DataFrame, days: int) -> pd.Series:
    """Number of earlier live touches of the same customer within ``days`` before each touch."""
    co = co.sort_values(["customer_id", "contact_ts"]).reset_index(drop=True)
    ts = (co["contact_ts"] - pd.Timestamp(0)).dt.total_seconds().to_numpy()
    cust = co["customer_id"].to_numpy()
    out = np.zeros(len(co), int)
    start = 0
    for i in range(len(co)):
        if i and cust[i] != cust[i - 1]:
            start = i
        j = start
        while ts[i] - ts[j] > days * 86400:
            j += 1
        start = j
        out[i] = i - j
    return pd.Series(out, index=co.index), co


def test_fatigue_raises_complaints_and_opt_outs(small_book: SyntheticBook) -> None:
    co = small_book.contacts
    co = co[~co["holdout"] & (co["direction"] == "outbound") & co["outcome"].notna()]
    prior, co = _prior_touches(co, 7)
    neg = co["outcome"].isin(["complaint", "opt_out"])
    calm, busy = neg[prior == 0].mean(), neg[prior >= 3].mean()
    assert busy > 1.5 * calm, (calm, busy, int((prior >= 3).sum()))


def test_fast_quote_followup_converts_more(small_book: SyntheticBook) -> None:
    co = small_book.contacts
    quotes = co[co["outcome"] == "quote"][["customer_id", "contact_ts"]]
    fu = co[co["purpose"] == "quote_followup"][["customer_id", "contact_ts"]].rename(columns={"contact_ts": "fu_ts"})
    m = quotes.merge(fu, on="customer_id")
    m = m[(m["fu_ts"] > m["contact_ts"]) & (m["fu_ts"] <= m["contact_ts"] + pd.Timedelta(days=45))]
    first = m.groupby(["customer_id", "contact_ts"])["fu_ts"].min().reset_index()
    first["delay"] = (first["fu_ts"].dt.normalize() - first["contact_ts"].dt.normalize()).dt.days
    pol = small_book.policies[["customer_id", "issue_date"]]
    j = first.merge(pol, on="customer_id", how="left")
    j["won"] = (j["issue_date"] >= j["contact_ts"].dt.normalize()) & (
        j["issue_date"] <= j["contact_ts"] + pd.Timedelta(days=30))
    won = j.groupby(["customer_id", "contact_ts", "delay"])["won"].any().reset_index()
    fast, slow = won.loc[won["delay"] <= 1, "won"].mean(), won.loc[won["delay"] >= 5, "won"].mean()
    assert fast > slow, (fast, slow, len(won))


def test_book_shape_is_realistic(small_book: SyntheticBook) -> None:
    cu, po, co = small_book.customers, small_book.policies, small_book.contacts
    as_of = pd.Timestamp(small_book.summary["as_of"])
    start = as_of - pd.Timedelta(days=365)
    alive = cu[cu["created_date"] < start]
    buyers = po[(po["issue_date"] >= start) & po["customer_id"].isin(alive["customer_id"])]["customer_id"].nunique()
    assert 0.06 < buyers / len(alive) < 0.35
    camp = co[co["campaign_id"].notna()]
    assert 0.05 < camp["holdout"].mean() < 0.15
    assert small_book.summary["customers_without_contacts"] > 0  # some customers are never touched
    assert set(co["channel"]) >= {"phone", "sms", "wechat", "visit", "event", "service"}
    assert co["outcome"].isna().sum() == co["holdout"].sum()
    # referrers were customers before the people they referred
    ref = cu.dropna(subset=["referred_by"]).drop_duplicates("customer_id")
    created = cu.drop_duplicates("customer_id").set_index("customer_id")["created_date"]
    assert (created.reindex(ref["referred_by"]).to_numpy() <= ref["created_date"].to_numpy()).all()
    # realistic gaps: optional fields are sometimes blank, required never
    assert 0 < cu["income_band"].isna().mean() < 0.2
    assert cu["needs_class"].notna().all()


@pytest.mark.parametrize("channel", ["sms"])
def test_drift_collapses_a_channels_response(small_params: Params, channel: str) -> None:
    sp = _tiny(small_params, n=600)
    start = sp.as_of - pd.Timedelta(days=200)
    drifted = sp.model_copy(update={"drift": sp.drift.model_copy(
        update={"start": start, "channel_response": {channel: 0.1}})})
    a, b = simulate_book(sp), simulate_book(drifted)

    def reach(book: SyntheticBook) -> float:
        co = book.contacts
        co = co[(co["channel"] == channel) & (co["contact_ts"] >= pd.Timestamp(start)) & ~co["holdout"]
                & (co["direction"] == "outbound")]
        return float((co["outcome"] != "no_answer").mean())

    assert reach(b) < 0.5 * reach(a)


def test_truth_effects_are_reproducible_across_random_streams(small_params: Params) -> None:
    """The truth's per-customer effect of a touch is a property of the customer, not of the Monte Carlo draw:
    two truths from independent replicate streams agree (common random numbers across scenarios; with an
    independent stream per scenario the phone lapse effects of two such truths correlated 0.18 here, with it
    0.40)."""
    from features.simulator import book as sy
    from features.simulator.world import World

    sp = _tiny(small_params, n=3000, truth_replicates=4)
    world = World(sp, np.random.default_rng(sp.seed))
    for t in range(sp.size.history_days):
        world.step(t)
    a, b = (sy._truth(world, sp, lambda _: None, stream=s) for s in (7, 8))
    hold = a["holds_in_force"].to_numpy()
    for outcome, rows, floor in (("lapse", hold, 0.3), ("purchase", slice(None), 0.6)):
        ta, tb = (t[f"p_{outcome}_phone"] - t[f"p_{outcome}_no_contact"] for t in (a, b))
        assert np.corrcoef(ta[rows], tb[rows])[0, 1] > floor, outcome


def test_truth_scenarios_in_a_process_pool_give_the_same_truth(small_params) -> None:
    """generate runs the truth's scenarios in parallel processes: the truth must not depend on where they ran."""
    from concurrent.futures import ProcessPoolExecutor

    sp = small_params.synthetic()
    sp = sp.model_copy(update={"size": sp.size.model_copy(update={"n_customers": 400})})
    serial = simulate_book(sp).truth
    with ProcessPoolExecutor(2) as pool:
        parallel = simulate_book(sp, mapper=pool.map).truth
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
    assert serial["p_purchase_visit"].sum() > 0  # the scenarios ran


def test_truth_with_the_policy_side_frozen_equals_recomputing_it(small_params: Params) -> None:
    """The truth's runs compute the policy side once (features.simulator.frozen): the values each day would
    recompute, to single precision's rounding (the hazards are computed in float32, ``frozen.accumulate``; the
    terms are grouped differently), and a run leaves them untouched for the next replicate and scenario."""
    import copy

    from features.simulator import book as sy
    from features.simulator.frozen import freeze
    from features.simulator.world import World

    sp = _tiny(small_params, n=1500, truth_replicates=2)
    world = World(sp, np.random.default_rng(sp.seed))
    for t in range(sp.size.history_days):
        world.step(t)
    inforce_at = world.pol.status[: world.pol.n] == 0
    plain, fast = copy.copy(world), copy.copy(world)
    fast.frozen = freeze(fast)
    before = copy.deepcopy(fast.frozen)
    shared_before = copy.deepcopy([*(getattr(world.pol, c) for c in sy.READ_ONLY_POLICY_COLUMNS), world.pref,
                                   world.campaigns, world.pol.bad_claim])
    task = (("bau", "none", "visit"), range(sp.truth_replicates))
    want = sy._replicates(plain, inforce_at, sp, 7, task, share_draws=False)
    got = sy._replicates(fast, inforce_at, sp, 7, task, share_draws=False)
    for scenario in task[0]:
        for w_run, g_run in zip(want[scenario], got[scenario], strict=True):  # each replicate's run
            for w, g in zip(w_run, g_run, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-12)
        assert sum(run[1].sum() for run in want[scenario]) > 0  # lapse hazard accumulated
    for name in ("n_inforce", "prem_inforce", "burden", "base", "claim_rate", "eta_fixed", "lapse_fixed",
                 "lapse_scale", "lapse_scale32", "inbound_p"):
        np.testing.assert_array_equal(getattr(fast.frozen, name), getattr(before, name))
    # what the replicates share instead of copying (book._read_only) is as it was; bad_claim, copied, too
    shared_after = [*(getattr(world.pol, c) for c in sy.READ_ONLY_POLICY_COLUMNS), world.pref, world.campaigns,
                    world.pol.bad_claim]
    for was, now in zip(shared_before, shared_after, strict=True):
        if isinstance(was, np.ndarray):
            np.testing.assert_array_equal(now, was)
        else:
            assert now == was


def test_a_code_set_lookup_answers_as_isin_does() -> None:
    """The simulated day asks its code sets through lookup tables (``params.member``), not ``np.isin``."""
    from features.simulator.params import CH, PURP, member

    codes = np.arange(len(PURP), dtype=np.int8).repeat(3)
    for names in (("sales",), ("sales", "quote_followup", "event_invite"), ("care", "claim")):
        want = np.isin(codes, [PURP.index(n) for n in names])
        np.testing.assert_array_equal(member(PURP, *names)[codes], want)
    assert member(CH, "visit", "event").sum() == 2 and member(CH, "visit", "event")[CH.index("visit")]
    with pytest.raises(ValueError):
        member(CH, "fax")  # a misspelt code fails loudly, not as an empty set


def test_campaign_codes_map_ids_and_leave_the_rest_empty() -> None:
    """Contacts outside a campaign (id -1) and ids without a code get None; the others their code."""
    from features.simulator.tables import campaign_codes

    got = campaign_codes(np.array([-1, 1, 3, 2, 7, 3], dtype=np.int32), {1: "CMP-A", 3: "CMP-C"})
    assert got.dtype == object
    assert got.tolist() == [None, "CMP-A", "CMP-C", None, None, "CMP-C"]
    assert campaign_codes(np.array([], dtype=np.int32), {}).tolist() == []
    assert campaign_codes(np.array([-1, 0]), {}).tolist() == [None, None]


def test_contacts_are_in_time_order_with_ties_in_id_order(small_params: Params) -> None:
    """The extract lists contacts by time, ties by contact id (ids number the rows as they were recorded)."""
    from features.simulator.tables import book_tables
    from features.simulator.world import World

    sp = _tiny(small_params, n=4000)  # enough contacts a day for some to share a second
    world = World(sp, np.random.default_rng(sp.seed))
    for t in range(sp.size.history_days):
        world.step(t)
    contacts = book_tables(world, sp, np.random.default_rng(1))["contacts"]  # before dirty rows are injected
    assert contacts["contact_ts"].duplicated().sum() >= 5  # ties, so the order among them is tested too
    expected = contacts.sort_values(["contact_ts", "contact_id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(contacts, expected)


def test_truth_scenarios_sharing_their_draws_equal_each_drawing_its_own(small_params: Params) -> None:
    """The scenarios of a replicate are served the draws they share once (features/simulator/draws.py): every
    run's probabilities are the ones its own generators give, to the last bit."""
    import copy

    from features.simulator import book as sy
    from features.simulator.frozen import freeze

    sp = _tiny(small_params, n=1500, truth_replicates=2)
    world = simulate_history(sp)
    template = copy.copy(world)
    template.frozen = freeze(template)
    inforce_at = world.pol.status[: world.pol.n] == 0
    task = (("none", "phone", "visit", "sms"), range(2))
    shared = sy._replicates(template, inforce_at, sp, 7, task, share_draws=True)
    alone = sy._replicates(template, inforce_at, sp, 7, task, share_draws=False)
    for sc in task[0]:
        for (s_pur, s_lap), (a_pur, a_lap) in zip(shared[sc], alone[sc], strict=True):
            np.testing.assert_array_equal(s_pur, a_pur)
            np.testing.assert_array_equal(s_lap, a_lap)
    assert not np.array_equal(shared["visit"][0][0], shared["none"][0][0])  # the touch moved the runs


def test_a_book_too_large_to_hold_a_replicates_draws_draws_per_scenario(small_params: Params,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared draws are held while a replicate's scenarios run; above the budget each scenario draws its own
    (the same truth, without the memory)."""
    import copy

    from features.simulator import book as sy
    from features.simulator import draws
    from features.simulator.frozen import freeze

    sp = _tiny(small_params, n=300, truth_replicates=1)
    world = simulate_history(sp)
    template = copy.copy(world)
    template.frozen = freeze(template)
    inforce_at = world.pol.status[: world.pol.n] == 0
    assert sy.shared_draw_bytes(template, sp) == 8 * (world.n + world.pol.n) * sp.horizon_days
    made: list[list[int]] = []

    class Recorded(draws.DayDraws):
        def __init__(self, seed: list[int]) -> None:
            made.append(seed)
            super().__init__(seed)

    monkeypatch.setattr(sy, "DayDraws", Recorded)
    task = (("none", "sms"), range(1))
    shared = sy._replicates(template, inforce_at, sp, 7, task)
    assert len(made) == sp.horizon_days  # a record per day of the replicate
    made.clear()
    monkeypatch.setattr(sy, "SHARED_DRAWS_MAX_BYTES", sy.shared_draw_bytes(template, sp) - 1)
    alone = sy._replicates(template, inforce_at, sp, 7, task)
    assert made == []  # over the budget: no day's draws recorded
    for sc in task[0]:
        np.testing.assert_array_equal(alone[sc][0][0], shared[sc][0][0])
