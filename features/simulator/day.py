"""Two phases of the simulated day, as functions of the world: business-as-usual outbound touches, and claims.

Split out of ``features.simulator.world`` (issue 19); ``World.step`` calls them in its fixed order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from features.simulator import frozen
from features.simulator.params import AGENT_MIX, CH, MODES, PURP, SUM_ASSURED_CLAIM
from features.simulator.stores import Touches

if TYPE_CHECKING:
    from features.simulator.world import World


def bau_outbound(w: World, t: int, active: np.ndarray, inforce: np.ndarray, n_inforce: np.ndarray,
                 touches: Touches) -> None:
    """Business as usual: agents, quote follow-ups, booked visits, renewal reminders, campaigns."""
    p, rng, n, P = w.p, w.rng, w.n, w.pol
    pn = P.n
    reachable = active & ~w.orphan
    # agents: favour customers they believe are valuable and warm (confounding)
    believed = 0.35 * w.income + 0.35 * (w.will + rng.normal(0, 0.3, n)) + 0.4 * (n_inforce > 0)
    attract = np.exp(believed)
    attract = attract / max(float(attract[reachable].mean()), 1e-9) if reachable.any() else attract
    rate = p.agent_contacts_per_year / 365.0 * attract
    weekday = w.date(t).weekday()
    rate = rate * (0.35 if weekday >= 5 else 1.15)
    who = np.flatnonzero(reachable & ~w.opted_out & (rng.random(n) < rate))
    if len(who):
        mix = np.tile(AGENT_MIX, (len(who), 1))
        rich = w.income[who] >= 3
        mix[rich, CH.index("visit")] *= 2.5
        mix[rich, CH.index("event")] *= 2.0
        mix[w.dnc[who], CH.index("phone")] = 0
        mix[w.dns[who], CH.index("sms")] = 0
        mix /= mix.sum(1, keepdims=True)
        ch = (mix.cumsum(1) < rng.random(len(who))[:, None]).sum(1).clip(0, len(CH) - 2)
        u = rng.random(len(who))
        purpose = np.where(u < 0.6, PURP.index("sales"), np.where(u < 0.85, PURP.index("care"),
                                                                  PURP.index("service")))
        for pu in np.unique(purpose):
            touches.add(who[purpose == pu], ch[purpose == pu], int(pu))
    # quote follow-ups and booked visits
    fu = np.flatnonzero(reachable & (w.followup_day == t) & (w.quote_day >= 0))
    touches.add(fu, rng.choice([CH.index("phone"), CH.index("wechat"), CH.index("visit")], len(fu),
                       p=[0.5, 0.3, 0.2]), PURP.index("quote_followup"))
    vis = np.flatnonzero(reachable & (w.visit_day == t))
    touches.add(vis, CH.index("visit"), PURP.index("sales"))
    # renewal reminders ten days before a premium anniversary
    due = inforce & (P.mode[:pn] != MODES.index("single")) & ((t - P.issue[:pn]) % 365 == 355)
    rc = np.unique(P.cust[:pn][due])
    rc = rc[reachable[rc] & (rng.random(len(rc)) < 0.7)]
    touches.add(rc, np.where(w.dns[rc], CH.index("phone"), CH.index("sms")), PURP.index("renewal"))
    # campaigns with a random holdout
    for cp in w.campaigns.get(t, []):
        elig = reachable & ~w.opted_out
        tg = cp["target"]
        if tg == "needs":
            elig &= w.needs == cp["needs"]
        elif tg == "income":
            elig &= w.income >= 2
        elif tg == "holders":
            elig &= n_inforce > 0
        elif tg == "prospects":
            elig &= n_inforce == 0
        if cp["ch"] == CH.index("sms"):
            elig &= ~w.dns
        if cp["ch"] == CH.index("phone"):
            elig &= ~w.dnc
        sel = np.flatnonzero(elig & (rng.random(n) < cp["share"]))
        hold = rng.random(len(sel)) < p.holdout_share
        touches.add(sel[~hold], int(cp["ch"]), int(cp["purpose"]), int(cp["id"]))
        touches.add(sel[hold], int(cp["ch"]), int(cp["purpose"]), int(cp["id"]), hold=True)

def claims_today(w: World, t: int, inforce: np.ndarray, realise: bool, touches: Touches,
                 rate: np.ndarray | None = None) -> None:
    """Claims today; they move the customer's state and bring inbound claim-service contacts. ``rate``: each
    policy row's daily claim rate when already known (the truth's runs)."""
    rng, P = w.rng, w.pol
    pn = P.n
    # --- claims today (they also bring inbound claim-service contacts) ------------------------
    claim_rate = frozen.claim_rate(w) if rate is None else rate
    cl = np.flatnonzero(inforce & (rng.random(pn) < claim_rate))
    if len(cl):
        early = (t - P.issue[cl]) < 365
        u = rng.random(len(cl))
        status = np.where(u < np.where(early, 0.25, 0.08), 1, 0)  # 0 paid, 1 rejected (pending set later)
        amount = np.where(SUM_ASSURED_CLAIM[P.line[cl]], P.sum[cl],
                          np.round(rng.lognormal(8.2, 1.0, len(cl)), 2))
        if realise:
            w.claims.add(pol=cl, day=np.full(len(cl), t, np.int32), amount=amount,
                            status=status.astype(np.int8))
        cc = P.cust[cl]
        rej = status == 1
        np.add.at(w.C, cc[rej], 1.5)
        np.add.at(w.will, cc[rej], -0.4)
        np.add.at(w.will, cc[~rej], 0.15)
        np.add.at(w.V, cc[~rej], 1.0)
        P.bad_claim[cl[rej]] += 1.0
        touches.add(cc[rng.random(len(cc)) < 0.7], CH.index("service"), PURP.index("claim"), inbound=True)
