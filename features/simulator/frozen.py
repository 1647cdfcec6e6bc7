"""What the truth's forward runs can compute once: the policy side of the book, fixed while nothing is realised.

In truth mode (``World.step(realise=False)``) no policy is issued, lapses or matures, so which policies are in
force, each customer's in-force count and premium, and every term of the purchase and lapse hazards that depends
only on that are the same on every day of every replicate and scenario. Recomputing them was about a third of
each simulated day (9 scenarios x 32 replicates x 90 days on the default book).

``accumulate`` is the truth's end of the day: the hazards of ``World._purchase_hazard`` and
``World._lapse_hazard`` with their fixed terms taken from here, multiplied in as survival; ``settle`` takes the
run's logarithm once. The same formulas with the terms grouped differently (a per-customer part gathered once per
policy, ``lift`` as ``4 - 3 exp(-S)``, products for sums of logarithms) and the hazards in single precision, so
the truth agrees with the day-by-day formulas to about 5e-7 relative (tested to 1e-6), not bit for bit; the random
draws, and so the book, are untouched.
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
    lapse_scale32: np.ndarray  # lapse_scale in single precision, what ``accumulate`` multiplies by
    fixed_on: dict[int, np.ndarray] = field(default_factory=dict)  # lapse_fixed + the duration term, per day
    eta_on_day: dict[int, np.ndarray] = field(default_factory=dict)  # eta_fixed + the cool-down's term, per day

    def lapse_fixed_on(self, t: int) -> np.ndarray:
        """The lapse log-hazard's fixed terms on day ``t`` (the duration term moves with the day only), in single
        precision: computed once per day and shared by the replicates of a scenario."""
        if t not in self.fixed_on:
            dur = t - self.issue
            fixed = self.lapse_fixed + np.where(dur < 730, 0.5, np.where(dur > 1825, -0.3, 0.0))
            self.fixed_on[t] = fixed.astype(np.float32)
        return self.fixed_on[t]

    def eta_on(self, t: int) -> np.ndarray:
        """The purchase log-hazard's fixed terms on day ``t`` (the cool-down, -1.3 within 180 days of a purchase,
        moves with the day only), in single precision, once per day."""
        if t not in self.eta_on_day:
            fixed = self.eta_fixed + np.where(t - self.last_purchase < 180, -1.3, 0.0)
            self.eta_on_day[t] = fixed.astype(np.float32)
        return self.eta_on_day[t]


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
    lapse_scale = w.p.lapse_base_per_year / 365.0 * base
    return FrozenPolicies(inforce, n_inforce, prem_inforce, idx, pc, burden, base, w.pol.issue[idx].copy(),
                          claim_rate(w), lapse_scale, 0.8 * burden, eta_fixed, inbound_rate(n_inforce),
                          w.last_purchase.copy(), lapse_scale.astype(np.float32))


def inbound_rate(n_inforce: np.ndarray) -> np.ndarray:
    """Each customer's daily chance of an inbound service request (twice as high with a policy in force)."""
    return 0.4 / 365 * (1 + (n_inforce > 0))


F32 = np.float32


def accumulate(w: World, fz: FrozenPolicies, t: int, active: np.ndarray, sale_p: np.ndarray,
               acc: dict[str, np.ndarray]) -> None:
    """Multiply day ``t``'s survival into ``acc``: of purchase per customer, and of lapse per in-force policy row
    (the formulas of ``World._purchase_hazard`` and ``_lapse_hazard``); ``settle`` turns them into the run's
    log-survival. A product, not a daily ``log1p`` and ``bincount``: NumPy's double ``log1p`` is scalar (1 ms for
    50,000 values here, a third of a simulated day) and a multiplication is not; the logarithm is taken once a run."""
    if "purchase_keep" not in acc:
        acc["purchase_keep"] = np.ones(w.n)
        acc["lapse_keep"] = np.ones(len(fz.idx))
    keep_buy = survival(np.multiply(_purchase_hazard32(w, fz, t), w.p.purchase_base_per_year / 365.0,
                                    dtype=np.float64))
    keep_buy *= 1.0 - sale_p
    np.maximum(keep_buy, 1e-12, out=keep_buy)  # 1 - p_buy, p_buy below 1 - 1e-12
    if not active.all():
        keep_buy[~active] = 1.0
    acc["purchase_keep"] *= keep_buy
    acc["lapse_keep"] *= survival(_lapse_hazard32(w, fz, t).astype(np.float64))


def _purchase_hazard32(w: World, fz: FrozenPolicies, t: int) -> np.ndarray:
    """The purchase hazard over its base rate, ``exp(eta) (4 - 3 exp(-S))`` (lift = 1 + 3 (1 - e^-S)), in single
    precision: NumPy vectorises float32 ``exp`` and not float64 (50,000 values: 53 against 281 microseconds here,
    with the AVX2 kernels ``pipelines/stage.sh`` pins), and single-precision passes move half the bytes. Its
    relative error is about 5e-7, far inside the spread of the truth's replicates (docs/synthetic_book.md); the
    survival it feeds is formed in double."""
    fatigue = w.F.astype(F32)  # fatigue's penalty in the exponent: 0.35 max(0, F - 3)
    fatigue -= F32(3.0)
    np.maximum(fatigue, F32(0.0), out=fatigue)
    fatigue *= F32(0.35)
    eta = w.will.astype(F32)
    eta *= F32(0.45)
    eta += fz.eta_on(t)
    eta -= fatigue
    np.exp(eta, out=eta)
    lift = w.S.astype(F32)
    np.negative(lift, out=lift)
    np.exp(lift, out=lift)
    lift *= F32(-3.0)
    lift += F32(4.0)
    eta *= lift
    return eta


def _lapse_hazard32(w: World, fz: FrozenPolicies, t: int) -> np.ndarray:
    """Each in-force policy row's lapse hazard, ``lapse_scale exp(x)``, in single precision (as above), with
    ``x`` = the day's fixed terms + 0.5 C - 0.7 (1 - e^-V) - 0.3 will of its customer + 0.6 bad claims."""
    per_customer = w.V.astype(F32)
    np.negative(per_customer, out=per_customer)
    np.exp(per_customer, out=per_customer)
    per_customer *= F32(0.7)
    per_customer += w.C.astype(F32) * F32(0.5)
    per_customer -= w.will.astype(F32) * F32(0.3)
    per_customer -= F32(0.7)
    x = np.take(per_customer, fz.pc)  # np.take: a quarter faster than indexing, the same values
    x += fz.lapse_fixed_on(t)
    x += np.take(w.pol.bad_claim, fz.idx) * F32(0.6)
    np.exp(x, out=x)
    x *= fz.lapse_scale32
    return x


def survival(hazard: np.ndarray) -> np.ndarray:
    """``1 - min(hazard, 0.5)`` in place, in double: a daily hazard of about 1e-4 keeps its precision only there."""
    np.minimum(hazard, 0.5, out=hazard)
    np.subtract(1.0, hazard, out=hazard)
    return hazard


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
