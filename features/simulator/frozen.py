"""What the truth's forward runs can compute once: the policy side of the book, fixed while nothing is realised.

In truth mode (``World.step(realise=False)``) no policy is issued, lapses or matures, so which policies are in
force, each customer's in-force count and premium, and every policy-level term of the lapse and claim hazards
that depends only on that are the same on every day of every replicate and scenario. Recomputing them was
about a third of each simulated day (9 scenarios x 32 replicates x 90 days on the default book). The values
are the very arrays ``World.step`` computes (same expressions, same order), so the truth is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    return FrozenPolicies(inforce, n_inforce, prem_inforce, idx, pc, burden, base, w.pol.issue[idx].copy(),
                          claim_rate(w))
