"""The simulated world: customers, their policies and contacts, advanced one day at a time.

Split out of ``features.simulator.book`` (issue 19). ``World.step`` runs the day's phases in a fixed order
(outbound touches, inbound requests, claims, outcomes, purchase and lapse hazards), and so its random
draws: the book depends on that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.simulator.day import bau_outbound, claims_today
from features.simulator.frozen import FrozenPolicies, accumulate, inbound_rate, lapse_terms, policy_state
from features.simulator.params import (
    APPOINT,
    CH,
    COMPLAINT,
    FATIGUE,
    HALF_LIFE,
    INCOME_P,
    INCOME_PREMIUM,
    INTEREST,
    LINE_PREMIUM,
    LINE_SUM_MULT,
    LINES,
    MODE_LAPSE,
    MODES,
    NEEDS,
    NEEDS_LINE_W,
    OPENS_QUOTE,
    OPT_OUT,
    PURP,
    QUOTE,
    QUOTE_MAX_AGE,
    QUOTE_TAU_DAYS,
    REACH,
    SAVE,
    SELLING_TOUCH,
    SOURCE_W,
    SOURCE_WILL,
    SOURCES,
    SOURCES_ARR,
    SPOT_SALE_CHANNEL,
    STIMULUS,
    SURRENDERABLE,
    SyntheticParams,
    decay,
    sigmoid,
)
from features.simulator.stores import Policies, Store, Touches


class World:
    """State of every customer and policy; ``step`` advances one day."""

    def __init__(self, p: SyntheticParams, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng
        n = p.size.n_customers
        self.n = n
        self.start = pd.Timestamp(p.as_of) - pd.Timedelta(days=p.size.history_days)
        H = p.size.history_days
        # --- who the customers are -------------------------------------------------------------
        new = rng.random(n) < p.new_customer_share
        created = np.where(new, rng.integers(0, H, n), -rng.integers(1, 15 * 365, n))
        self.created = created.astype(np.int32)
        age_at_created = np.clip(rng.normal(37, 11, n), 18, 75)
        self.birth = (self.created - age_at_created * 365.25 - rng.integers(0, 365, n)).astype(np.int32)
        self.female = rng.random(n) < 0.52
        self.source = rng.choice(len(SOURCES), n, p=SOURCE_W)
        inc_shift = np.where(SOURCES_ARR[self.source] == "bank_branch", 0.4, 0.0)
        self.income = np.clip(np.searchsorted(np.cumsum(INCOME_P), rng.random(n)) + np.round(
            rng.normal(inc_shift, 0.3)).astype(int), 0, 4).astype(np.int8)
        self.ability = self.income + rng.normal(0, 0.6, n)
        self.will = SOURCE_WILL[self.source] + rng.normal(0, 1.0, n)
        age_now = self.age(H)
        self.married = rng.random(n) < np.clip((age_now - 22) / 15, 0.05, 0.85)
        self.children = np.where(self.married, rng.poisson(np.clip((age_now - 24) / 12, 0.1, 1.6)), 0)
        self.children = np.minimum(self.children, 5).astype(np.int8)
        needs = np.where(self.children > 0, 0, 1)
        needs = np.where((self.income >= 3) & (rng.random(n) < 0.6), 1, needs)
        needs = np.where((self.children == 0) & self.married & (rng.random(n) < 0.5), 0, needs)
        needs = np.where(age_now >= 60, np.where(rng.random(n) < 0.85, 2, needs), needs)
        needs = np.where(rng.random(n) < 0.06 + 0.03 * self.income, 3, needs)
        self.needs = needs.astype(np.int8)
        self.occupation = np.searchsorted(np.cumsum([0.35, 0.30, 0.15, 0.10, 0.06, 0.04]), rng.random(n)) + 1
        # channel preference (random effect + age pattern): young prefer WeChat, older phone/visits
        self.pref = rng.normal(0, 0.4, (n, len(CH)))
        young = (age_now < 45).astype(float)
        self.pref[:, CH.index("wechat")] += 0.6 * young - 0.4 * (1 - young)
        self.pref[:, CH.index("phone")] += 0.3 * (age_now > 50)
        self.pref[:, CH.index("visit")] += 0.3 * (age_now > 50)
        self.pref[:, CH.index("email")] += 0.4 * (self.needs == 1)
        self.orphan = rng.random(n) < p.orphan_share
        self.agent = np.where(self.orphan, -1, rng.integers(0, p.size.n_agents, n))
        self.prospect = rng.random(n) < p.prospect_share
        # need intensity: how much the customer currently needs cover (life stage)
        self.need = self._life_stage(age_now) + 0.25 * (self.children > 0) + rng.normal(0, 0.5, n)
        # referrals: a referral-sourced customer was brought by an earlier, warmer customer
        self.referred_by = np.full(n, -1, np.int64)
        ref = np.flatnonzero(SOURCES_ARR[self.source] == "referral")
        order = np.argsort(self.created, kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        warm = np.exp(np.clip(self.will[order], -3, 3))
        cum = np.cumsum(warm)
        for i in ref:  # a few thousand at most; a referrer must predate the referee
            r = rank[i]
            if r < 10:
                continue
            u = rng.random() * cum[r - 1]
            self.referred_by[i] = order[np.searchsorted(cum[: r], u)]
        # --- dynamic state ------------------------------------------------------------------------
        self.S = np.zeros(n)
        self.F = np.zeros(n)
        self.C = np.zeros(n)
        self.V = np.zeros(n)
        self.last_purchase = np.full(n, -10_000, np.int32)
        self.quote_day = np.full(n, -1, np.int32)
        self.followup_day = np.full(n, -1, np.int32)
        self.followups = np.zeros(n, np.int8)
        self.visit_day = np.full(n, -1, np.int32)
        self.opted_out = np.zeros(n, bool)
        self.dnc = np.zeros(n, bool)
        self.dns = np.zeros(n, bool)
        self.first_policy = np.full(n, np.iinfo(np.int32).max, np.int32)
        self.pol = Policies(capacity=int(n * 3.5) + 100)
        self.contacts = Store({"cust": np.int64, "day": np.int32, "ch": np.int8, "inbound": bool,
                                "purpose": np.int8, "outcome": np.int8, "campaign": np.int32,
                                "holdout": bool})
        self.claims = Store({"pol": np.int64, "day": np.int32, "amount": np.float64, "status": np.int8})
        self.campaigns = self._campaign_plan(H + p.horizon_days + 1)
        self._today: tuple[np.ndarray, ...] | None = None  # today's touches, for outcomes and recording
        self.frozen: FrozenPolicies | None = None  # set on the truth's template (features.simulator.frozen)
        self._initial_policies()

    # --- helpers -------------------------------------------------------------------------------
    def age(self, day: int | np.ndarray) -> np.ndarray:
        return (day - self.birth) / 365.25

    @staticmethod
    def _life_stage(age: np.ndarray) -> np.ndarray:
        # peaks in the family-building years, a second smaller peak around retirement
        return 1.0 - ((age - 38) / 16) ** 2 * 0.5 + 0.35 * np.exp(-(((age - 62) / 6) ** 2))

    def date(self, day: np.ndarray | int) -> pd.DatetimeIndex | pd.Timestamp:
        return self.start + pd.to_timedelta(day, unit="D")

    def drifting(self, day: int) -> bool:
        d = self.p.drift
        return d.start is not None and self.date(day) >= pd.Timestamp(d.start)

    def _held_lines(self, cust: np.ndarray) -> np.ndarray:
        """Which product lines each of the distinct customers ``cust`` holds in force: a row per customer. Only
        their rows: the whole book's matrix, rebuilt on each day with a purchase, was 7% of the history's time."""
        P, pn = self.pol, self.pol.n
        pos = np.full(self.n, -1, np.int64)
        pos[cust] = np.arange(len(cust))
        at = pos[P.cust[:pn]]
        m = (P.status[:pn] == 0) & (at >= 0)
        held = np.zeros((len(cust), len(LINES)), bool)
        held[at[m], P.line[:pn][m]] = True
        return held

    def _new_policies(self, cust: np.ndarray, day: np.ndarray, held: np.ndarray | None = None) -> None:
        """Issue one policy to each customer in ``cust`` (product, premium, mode, term); ``held``: the lines each
        already holds in force (``_held_lines(cust)``), a quarter as likely to be bought again."""
        if len(cust) == 0:
            return
        rng, k = self.rng, len(cust)
        w = NEEDS_LINE_W[self.needs[cust]].copy()
        if held is not None:
            w = np.where(held, w * 0.25, w)
        if self.p.drift.withdrawn_lines and np.any([self.drifting(int(d)) for d in np.unique(day)]):
            drifted = np.array([self.drifting(int(d)) for d in day])
            for ln in self.p.drift.withdrawn_lines:
                w[drifted, LINES.index(ln)] = 0.0
        young_kids = self.children[cust] > 0
        w[:, LINES.index("education")] *= young_kids
        w = w / w.sum(1, keepdims=True)
        line = (w.cumsum(1) < rng.random(k)[:, None]).sum(1).clip(0, len(LINES) - 1)
        prem = (INCOME_PREMIUM[self.income[cust]] * LINE_PREMIUM[line] * rng.lognormal(0, 0.5, k)
                * np.exp(0.25 * (self.ability[cust] - self.income[cust])))
        prem = np.round(np.maximum(prem, 50.0), 2)
        sum_ = np.round(prem * LINE_SUM_MULT[line] * rng.lognormal(0, 0.2, k), -2)
        mode_p = np.where(self.income[cust][:, None] >= 3, [0.60, 0.05, 0.05, 0.10, 0.20],
                          [0.50, 0.06, 0.07, 0.27, 0.10])
        mode_p = np.where((line == LINES.index("annuity"))[:, None], [0.50, 0.0, 0.0, 0.05, 0.45], mode_p)
        mode = (mode_p.cumsum(1) < rng.random(k)[:, None]).sum(1).clip(0, len(MODES) - 1)
        term = np.full(k, np.iinfo(np.int32).max, np.int64)
        term = np.where(line == LINES.index("accident"), 365, term)
        term = np.where(line == LINES.index("annuity"), 3650, term)
        term = np.where(line == LINES.index("education"), rng.integers(5, 16, k) * 365, term)
        term = np.where((line == LINES.index("life")) & (rng.random(k) < 0.4), 20 * 365, term)
        maturity = np.minimum(day.astype(np.int64) + term, np.iinfo(np.int32).max).astype(np.int32)
        self.pol.add(cust, line, day, prem, sum_, mode, maturity)
        self.first_policy[cust] = np.minimum(self.first_policy[cust], day)
        self.last_purchase[cust] = np.maximum(self.last_purchase[cust], day)

    def _initial_policies(self) -> None:
        """Policies bought before the window, with lapses and maturities already played out."""
        rng = self.rng
        old = np.flatnonzero((self.created < 0) & ~self.prospect)
        n_pol = 1 + np.minimum(rng.poisson(0.35 + 0.25 * self.income[old]), 4)
        cust = np.repeat(old, n_pol)
        first = np.r_[True, cust[1:] != cust[:-1]]
        issue = np.where(first, self.created[cust],
                         rng.integers(self.created[cust], 0)).astype(np.int32)
        order = np.lexsort((issue, cust))
        cust, issue = cust[order], issue[order]
        start = self.pol.n
        self._new_policies(cust, issue)
        idx = np.arange(start, self.pol.n)
        years = -self.pol.issue[idx] / 365.25
        p_gone = 1 - np.exp(-self.p.lapse_base_per_year * 1.3 * MODE_LAPSE[self.pol.mode[idx]] * years)
        gone = rng.random(len(idx)) < p_gone
        end = rng.integers(self.pol.issue[idx], 0).astype(np.int32)
        matured = self.pol.maturity[idx] < 0
        lapsed = gone & ~matured & (end < self.pol.maturity[idx])
        surrender = lapsed & SURRENDERABLE[self.pol.line[idx]] & (end - self.pol.issue[idx] > 730)
        self.pol.status[idx[matured]] = 3
        self.pol.end[idx[matured]] = self.pol.maturity[idx[matured]]
        self.pol.status[idx[lapsed]] = np.where(surrender[lapsed], 2, 1)
        self.pol.end[idx[lapsed]] = end[lapsed]

    def _campaign_plan(self, days: int) -> dict[int, list[dict[str, Any]]]:
        """Monthly campaigns: a target rule, a channel, a purpose and a random holdout."""
        rng = self.rng
        plan: dict[int, list[dict[str, Any]]] = {}
        for m0 in range(0, days, 30):
            for k in range(self.p.campaigns_per_month):
                day = int(m0 + rng.integers(0, 30))
                ch = rng.choice(["sms", "phone", "wechat", "email", "letter", "event"],
                                p=[0.35, 0.2, 0.2, 0.1, 0.05, 0.1])
                purpose = "event_invite" if ch == "event" else rng.choice(
                    ["sales", "care", "renewal"], p=[0.6, 0.25, 0.15])
                target = rng.choice(["all", "needs", "income", "holders", "prospects"])
                d = self.date(day)
                plan.setdefault(day, []).append({
                    "id": len([1 for v in plan.values() for _ in v]) + 1,
                    "code": f"CMP{d:%Y%m}{k + 1:02d}", "ch": CH.index(str(ch)),
                    "purpose": PURP.index(str(purpose)), "target": str(target),
                    "needs": int(rng.integers(0, len(NEEDS))), "share": float(rng.uniform(0.05, 0.2)),
                })
        return plan

    # --- one day ---------------------------------------------------------------------------------
    def step(self, t: int, outbound: str = "bau", realise: bool = True,
             acc: dict[str, np.ndarray] | None = None) -> None:
        """Advance one day.

        ``outbound``: "bau" (agents, campaigns, follow-ups, reminders), "none", or a channel name
        (one sales contact today to every active customer through that channel, nothing else).
        ``realise``: draw purchases and lapses (history) or only accumulate their log-survival in
        ``acc`` (ground truth), leaving the book unchanged. The phases run in this order, and so do
        their random draws: the book depends on it.
        """
        n = self.n
        if realise:
            newc = np.flatnonzero((self.created == t) & ~self.prospect)
            self._new_policies(newc, np.full(len(newc), t, np.int32))
        self.S *= decay(HALF_LIFE["S"])
        self.F *= decay(HALF_LIFE["F"])
        self.C *= decay(HALF_LIFE["C"])
        self.V *= decay(HALF_LIFE["V"])
        active = self.created <= t
        fz = None if realise else self.frozen  # the truth's runs realise nothing: the policy side is fixed
        if fz is None:
            inforce, n_inforce, prem_inforce = policy_state(self)
        else:
            inforce, n_inforce, prem_inforce = fz.inforce, fz.n_inforce, fz.prem_inforce

        touches = Touches()
        if outbound == "bau":
            bau_outbound(self, t, active, inforce, n_inforce, touches)
        elif outbound != "none":
            touches.add(np.flatnonzero(active), CH.index(outbound), PURP.index("sales"))
        # inbound service requests
        inbound_p = inbound_rate(n_inforce) if fz is None else fz.inbound_p
        inb = np.flatnonzero(active & (self.rng.random(n) < inbound_p))
        touches.add(inb, self.rng.choice([CH.index("phone"), CH.index("wechat"), CH.index("service")], len(inb)),
                    PURP.index("service"), inbound=True)
        claims_today(self, t, inforce, realise, touches, None if fz is None else fz.claim_rate)
        sale_p = self._outcomes(t, touches)
        expired = (self.quote_day >= 0) & (t - self.quote_day > QUOTE_MAX_AGE)
        self.quote_day[expired] = -1
        if fz is not None:
            assert acc is not None
            accumulate(self, fz, t, active, sale_p, acc)
            return
        p_buy = self._purchase_hazard(t, active, n_inforce, sale_p)
        idx, pc, lh = self._lapse_hazard(t, inforce, prem_inforce)
        if realise:
            self._realise(t, p_buy, idx, lh)
        else:  # truth mode without a frozen policy side: every term recomputed (the reference tests compare with)
            assert acc is not None
            acc["purchase"] += np.log1p(-np.minimum(p_buy, 1 - 1e-12))
            m = acc["lapse_mask"][idx]
            np.add.at(acc["lapse"], pc[m], np.log1p(-lh[m]))

    def _outcomes(self, t: int, touches: Touches) -> np.ndarray:
        """Draw each touch's outcome, update the customer's state; the chance a touch closes a sale today."""
        p, rng, n = self.p, self.rng, self.n
        # --- contact outcomes -----------------------------------------------------------------------
        sale_p = np.zeros(n)  # probability that a contact today closes a sale
        if touches.cust:
            c = np.concatenate(touches.cust)
            ch = np.concatenate(touches.ch).astype(np.int64)
            purp = np.concatenate(touches.purp)
            camp = np.concatenate(touches.camp)
            hold = np.concatenate(touches.hold)
            inbound = np.concatenate(touches.inb)
            k = len(c)
            resp = np.ones(k)
            if self.drifting(t):
                for name, mult in p.drift.channel_response.items():
                    resp[ch == CH.index(name)] *= mult
            fat = self.F[c]
            over = np.maximum(0.0, fat - 2.0)
            logit_r = np.log(REACH[ch] / (1 - REACH[ch])) + self.pref[c, ch] + 0.3 * self.will[c] - 0.35 * over
            reached = inbound | (rng.random(k) < sigmoid(logit_r) * np.minimum(resp, 1.0))
            reached &= ~hold
            outcome = np.where(reached, 1, 0).astype(np.int8)  # 0 no_answer 1 reached
            sales = SELLING_TOUCH[purp]
            logit_i = (-1.8 + 0.6 * self.will[c] + 0.5 * self.need[c] + self.pref[c, ch] + INTEREST[ch]
                       - 0.4 * over + 0.5 * sales + 0.4 * np.log(np.maximum(resp, 1e-6)))
            interested = reached & (rng.random(k) < sigmoid(logit_i))
            outcome[interested] = 2
            # quotes and appointments come from selling touches, not from chasing an open quote
            selling = OPENS_QUOTE[purp]
            quote = interested & selling & (rng.random(k) < QUOTE[ch])
            outcome[quote] = 3
            appoint = interested & selling & ~quote & (rng.random(k) < APPOINT[ch])
            outcome[appoint] = 4
            neg_mult = np.exp(0.8 * np.maximum(0.0, fat - 1.5)) * (1 + self.C[c])
            complaint = reached & ~inbound & (rng.random(k) < COMPLAINT[ch] * neg_mult)
            p_opt = OPT_OUT[ch] * neg_mult * np.exp(-0.3 * self.will[c])
            opt = reached & ~inbound & ~complaint & (rng.random(k) < p_opt)
            outcome[complaint] = 6
            outcome[opt] = 7
            live = ~hold
            # state updates
            np.add.at(self.F, c[live], FATIGUE[ch[live]])
            stim = STIMULUS[ch] * (1 + 1.5 * interested) * reached * np.maximum(resp, 0)
            np.add.at(self.S, c, stim)
            np.add.at(self.V, c, SAVE[ch] * reached * np.where(sales, 0.5, 1.0))  # any touch keeps the bond
            np.add.at(self.will, c, 0.03 * interested - 0.3 * complaint)
            np.add.at(self.C, c, 1.0 * complaint)
            self.opted_out[c[opt]] = True
            self.dnc[c[opt & (ch != CH.index("sms"))]] = True
            self.dns[c[opt]] = True
            np.maximum.at(sale_p, c, self._quote_clock(t, c, ch, purp, reached, interested, quote, appoint))
            self._today = (c, ch, purp, camp, hold, inbound, outcome)
        else:
            self._today = None
        return sale_p

    def _quote_clock(self, t: int, c: np.ndarray, ch: np.ndarray, purp: np.ndarray, reached: np.ndarray,
                     interested: np.ndarray, quote: np.ndarray, appoint: np.ndarray) -> np.ndarray:
        """Open quotes' follow-up clocks and booked visits; each touch's chance to close a sale today."""
        p, rng = self.p, self.rng
        # quotes open a follow-up clock; appointments book a visit
        qc = c[quote]
        self.quote_day[qc] = t
        self.followups[qc] = 0
        fast = rng.random(len(qc)) < p.quote_followup_fast_share
        delay = np.where(fast, 1, rng.choice([3, 5, 8, 12, 40], len(qc)))
        self.followup_day[qc] = t + delay
        ac = c[appoint]
        self.visit_day[ac] = t + rng.integers(2, 8, len(ac))
        # a reached follow-up converts the open quote with a probability that decays with delay
        fu_reach = reached & (purp == PURP.index("quote_followup")) & (self.quote_day[c] >= 0)
        age_q = t - self.quote_day[c]
        recent = (t - self.last_purchase[c]) < 180
        conv = np.where(fu_reach, 0.45 * sigmoid(self.will[c] + 0.5) * np.exp(-(age_q - 1) / QUOTE_TAU_DAYS)
                        * np.where(recent, 0.3, 1.0), 0.0)
        # sale on the spot at visits and events, from stimulus and interest
        spot = np.where(interested & SPOT_SALE_CHANNEL[ch], 0.05, 0.0)
        q_sale = 1 - (1 - conv) * (1 - spot)
        # schedule the next follow-up of a still-open quote (up to three)
        again = c[(purp == PURP.index("quote_followup")) & ~fu_reach | (fu_reach & (conv < 0.5))]
        again = again[self.followups[again] < 2]
        self.followups[again] += 1
        self.followup_day[again] = t + rng.choice([2, 3, 5], len(again))
        return q_sale

    def _purchase_hazard(self, t: int, active: np.ndarray, n_inforce: np.ndarray, sale_p: np.ndarray) -> np.ndarray:
        p = self.p
        # --- purchase hazard -------------------------------------------------------------------------
        cool = np.where(t - self.last_purchase < 180, -1.3, 0.0)
        eta = (0.55 * self.need + 0.30 * self.ability + 0.45 * self.will - 0.35 * np.minimum(n_inforce, 5)
               + cool + 0.4 * (n_inforce == 0) * ~self.prospect - 0.3 * self.prospect - 1.2)
        lift = 1 + 3.0 * (1 - np.exp(-self.S))
        fat_pen = np.exp(-0.35 * np.maximum(0.0, self.F - 3.0))
        h = p.purchase_base_per_year / 365.0 * np.exp(eta) * lift * fat_pen
        p_buy = 1 - (1 - np.minimum(h, 0.5)) * (1 - sale_p)
        p_buy = np.where(active, p_buy, 0.0)
        return p_buy

    def _lapse_hazard(self, t: int, inforce: np.ndarray, prem_inforce: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in-force policy rows, their customers, each policy's lapse probability today). The truth's runs use
        ``frozen.accumulate``: the same hazard with its fixed terms computed once."""
        p, P = self.p, self.pol
        # --- lapse hazard (per in-force, premium-paying or surrenderable policy) ---------------------
        idx, pc, burden, base = lapse_terms(self, inforce, prem_inforce)
        dur = t - P.issue[idx]
        dur_eff = np.where(dur < 730, 0.5, np.where(dur > 1825, -0.3, 0.0))
        lh = (p.lapse_base_per_year / 365.0 * base
              * np.exp(0.8 * burden + 0.5 * self.C[pc] - 0.7 * (1 - np.exp(-self.V[pc])) - 0.3 * self.will[pc]
                       + dur_eff + 0.6 * P.bad_claim[idx]))
        lh = np.minimum(lh, 0.5)
        return idx, pc, lh

    def _realise(self, t: int, p_buy: np.ndarray, idx: np.ndarray, lh: np.ndarray) -> None:
        """Draw today's purchases, lapses and maturities and record today's contacts in the book."""
        rng, n, P = self.rng, self.n, self.pol
        pn = P.n
        buy = np.flatnonzero(rng.random(n) < p_buy)
        held = self._held_lines(buy) if len(buy) else None
        self._new_policies(buy, np.full(len(buy), t, np.int32), held)
        self.S[buy] *= 0.3
        self.quote_day[buy] = -1  # the quote is closed: no more chasing, no booked visit
        self.followup_day[buy] = -1
        self.visit_day[buy] = -1
        if self._today is not None:  # a purchase on the day of a reached touch is that touch's outcome
            c, ch, purp, camp, hold, inbound, outcome = self._today
            bought = np.zeros(n, bool)
            bought[buy] = True
            hit = bought[c] & (outcome >= 1) & (outcome <= 4)
            first_hit = hit & ~pd.Series(np.where(hit, c, -1 - np.arange(len(c)))).duplicated().to_numpy()
            outcome[first_hit] = 5
        lapse = idx[rng.random(len(idx)) < lh]
        surr = SURRENDERABLE[P.line[lapse]] & ((t - P.issue[lapse]) > 730)
        P.status[lapse] = np.where(surr, 2, 1)
        P.end[lapse] = t
        mat = np.flatnonzero((P.status[:pn] == 0) & (P.maturity[:pn] <= t))
        P.status[mat] = 3
        P.end[mat] = P.maturity[mat]
        if self._today is not None:
            c, ch, purp, camp, hold, inbound, outcome = self._today
            self.contacts.add(cust=c, day=np.full(len(c), t, np.int32), ch=ch, inbound=inbound,
                              purpose=purp, outcome=np.where(hold, -1, outcome), campaign=camp, holdout=hold)
