"""What the truth's forward runs can compute once: the policy side of the book, fixed while nothing is realised.

In truth mode (``World.step(realise=False)``) no policy is issued, lapses or matures, so which policies are in
force, each customer's in-force count and premium, and every term of the purchase and lapse hazards that depends
only on that are the same on every day of every replicate and scenario. Recomputing them was about a third of
each simulated day (9 scenarios x 32 replicates x 90 days on the default book).

``accumulate`` is the truth's end of the day: the hazards of ``World._purchase_hazard`` and
``World._lapse_hazard`` with their fixed terms taken from here, multiplied in as survival; ``settle`` takes the
run's logarithm once. The same formulas with the terms grouped differently (a per-customer part gathered once per
policy, ``lift`` as ``4 - 3 exp(-S)``, products for sums of logarithms) and ``exp`` in single precision, so the
truth agrees with the day-by-day formulas to about 1e-7 relative (tested), not bit for bit; the random draws, and
so the book, are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from features.simulator.params import INCOME_CAPACITY, LINE_CLAIM_RATE, MODE_LAPSE, MODES

if TYPE_CHECKING:
    from features.simulator.world import World


@dataclass(frozen=True)
class FrozenPolicies:
    """The in-force book and the hazards' policy-level terms, as of the start of the truth's runs."""

    inforce: np.ndarray       # policy rows in force (bool, one per policy row)
    n_inforce: np.ndarray     # per customer
    prem_inforce: np.ndarray  # per customer
    idx: np.ndarray           # the in-force rows
    pc: np.ndarray            # their customers
    burden: np.ndarray        # log premium burden per in-force row
    base: np.ndarray          # payment mode's lapse multiplier per in-force row
    issue: np.ndarray         # issue day per in-force row
    claim_rate: np.ndarray    # daily claim rate per policy row
    lapse_scale: np.ndarray   # per in-force row: base lapse rate per day x payment mode's multiplier
    lapse_fixed: np.ndarray   # per in-force row: the burden's term of the lapse log-hazard
    eta_fixed: np.ndarray     # per customer: the purchase log-hazard's terms that do not move in truth mode
    inbound_p: np.ndarray     # per customer: the daily chance of an inbound service request
    last_purchase: np.ndarray  # per customer: no purchase is realised, so the cool-down moves with the day only
    fixed_on: dict[int, np.ndarray] = field(default_factory=dict)  # lapse_fixed + the duration term, per day
    cool_on_day: dict[int, np.ndarray] = field(default_factory=dict)  # the purchase cool-down's term, per day

    def lapse_fixed_on(self, t: int) -> np.ndarray:
        """The lapse log-hazard's fixed terms on day ``t`` (the duration term moves with the day only): computed
        once per day and shared by the replicates of a scenario (each pooled scenario gets its own copy)."""
        if t not in self.fixed_on:
            dur = t - self.issue
            self.fixed_on[t] = self.lapse_fixed + np.where(dur < 730, 0.5, np.where(dur > 1825, -0.3, 0.0))
        return self.fixed_on[t]

    def cool_on(self, t: int) -> np.ndarray:
        """The purchase log-hazard's cool-down term on day ``t`` (-1.3 within 180 days of a purchase), once per day."""
        if t not in self.cool_on_day:
            self.cool_on_day[t] = np.where(t - self.last_purchase < 180, -1.3, 0.0)
        return self.cool_on_day[t]


def policy_state(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in force, in-force policies per customer, in-force premium per customer): ``World.step``'s first terms."""
    P, pn = w.pol, w.pol.n
    inforce = P.status[:pn] == 0
    n_inforce = np.bincount(P.cust[:pn][inforce], minlength=w.n)
    prem_inforce = np.bincount(P.cust[:pn][inforce], weights=P.premium[:pn][inforce], minlength=w.n)
    return inforce, n_inforce, prem_inforce


def lapse_terms(w: World, inforce: np.ndarray, prem_inforce: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(in-force rows, their customers, premium burden, mode multiplier): the lapse hazard's fixed terms."""
    P = w.pol
    idx = np.flatnonzero(inforce)
    pc = P.cust[idx]
    burden = np.log(np.maximum(prem_inforce[pc], 1.0) / INCOME_CAPACITY[w.income[pc]] / 0.05)
    mode = P.mode[idx]
    base = np.where(mode == MODES.index("single"), 0.25, MODE_LAPSE[mode])
    return idx, pc, burden, base


def claim_rate(w: World) -> np.ndarray:
    """Each policy row's daily claim rate (by product line)."""
    return LINE_CLAIM_RATE[w.pol.line[: w.pol.n]] / 365.0


def freeze(w: World) -> FrozenPolicies:
    """The policy side of ``w`` now, for forward runs that realise nothing (the truth)."""
    inforce, n_inforce, prem_inforce = policy_state(w)
    idx, pc, burden, base = lapse_terms(w, inforce, prem_inforce)
    eta_fixed = (0.55 * w.need + 0.30 * w.ability - 0.35 * np.minimum(n_inforce, 5)
                 + 0.4 * (n_inforce == 0) * ~w.prospect - 0.3 * w.prospect - 1.2)
    return FrozenPolicies(inforce, n_inforce, prem_inforce, idx, pc, burden, base, w.pol.issue[idx].copy(),
                          claim_rate(w), w.p.lapse_base_per_year / 365.0 * base, 0.8 * burden, eta_fixed,
                          inbound_rate(n_inforce), w.last_purchase.copy())


def inbound_rate(n_inforce: np.ndarray) -> np.ndarray:
    """Each customer's daily chance of an inbound service request (twice as high with a policy in force)."""
    return 0.4 / 365 * (1 + (n_inforce > 0))


def exp32(x: np.ndarray) -> np.ndarray:
    """``exp`` in single precision, returned in double: NumPy vectorises the float32 ``exp`` and not the float64
    one (50,000 values: 71 against 530 microseconds here), and the four ``exp`` of each simulated day were most
    of the truth's time. A hazard's relative error is then about 1e-7; the truth moved by at most 3e-7 relative
    on the default book, far inside the spread of its replicates (docs/synthetic_book.md). Sums and logarithms
    stay in double."""
    return np.exp(x.astype(np.float32)).astype(np.float64)


def accumulate(w: World, fz: FrozenPolicies, t: int, active: np.ndarray, sale_p: np.ndarray,
               acc: dict[str, np.ndarray]) -> None:
    """Multiply day ``t``'s survival into ``acc``: of purchase per customer, and of lapse per in-force policy row
    (the formulas of ``World._purchase_hazard`` and ``_lapse_hazard``); ``settle`` turns them into the run's
    log-survival. A product, not a daily ``log1p`` and ``bincount``: NumPy's double ``log1p`` is scalar (1 ms for
    50,000 values here, a third of a simulated day) and a multiplication is not; the logarithm is taken once a run."""
    # fatigue's penalty in the exponent
    eta = fz.eta_fixed + 0.45 * w.will + fz.cool_on(t) - 0.35 * np.maximum(0.0, w.F - 3.0)
    h = w.p.purchase_base_per_year / 365.0 * exp32(eta) * (4.0 - 3.0 * exp32(-w.S))  # lift = 1 + 3 (1 - e^-S)
    keep_buy = np.maximum((1 - np.minimum(h, 0.5)) * (1 - sale_p), 1e-12)  # 1 - p_buy, p_buy below 1 - 1e-12
    if not active.all():
        keep_buy = np.where(active, keep_buy, 1.0)
    if "purchase_keep" not in acc:
        acc["purchase_keep"] = np.ones(w.n)
        acc["lapse_keep"] = np.ones(len(fz.idx))
    acc["purchase_keep"] *= keep_buy
    per_customer = 0.5 * w.C - 0.7 * (1 - exp32(-w.V)) - 0.3 * w.will
    x = fz.lapse_fixed_on(t) + per_customer[fz.pc] + 0.6 * w.pol.bad_claim[fz.idx]
    acc["lapse_keep"] *= 1 - np.minimum(fz.lapse_scale * exp32(x), 0.5)


def settle(fz: FrozenPolicies, acc: dict[str, np.ndarray]) -> None:
    """End a run: add its log-survival to ``acc["purchase"]`` per customer and to ``acc["lapse"]`` per customer
    over the in-force policies in ``acc["lapse_mask"]`` (what the day-by-day reference path sums)."""
    if "purchase_keep" not in acc:  # a run of no days
        return
    with np.errstate(divide="ignore"):  # a survival that underflowed to 0 is a log of -inf: a certain purchase
        acc["purchase"] += np.log(acc.pop("purchase_keep"))
    m = acc["lapse_mask"][fz.idx]  # the truth counts every policy in force at as-of, which is all of them
    rows = acc.pop("lapse_keep")
    acc["lapse"] += np.bincount(fz.pc[m], weights=np.log(rows[m]), minlength=len(acc["lapse"]))
