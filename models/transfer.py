"""The lapse effect of a touch, borrowed from the purchase effect with an elasticity the lapse data estimates.

Lapses are rare and a touch moves them by a few hundredths of a point, so the lapse data cannot rank channels
on its own (per-channel observed-over-expected ratios have standard errors larger than the effects). What it
can estimate is a low-dimensional link to the purchase effect, which the data resolves well:

    tau_lapse_c(x) = kappa x (r_c(x) / r0) ** elasticity x p_lapse(x),   r_c(x) = tau_purchase_c(x) / p_purchase(x)

* ``kappa``: the relative lapse effect of a touch whose relative purchase effect is ``r0`` (the geometric mean
  over the treated rows, so kappa is the typical effect and nearly uncorrelated with the elasticity);
* ``elasticity``: how strongly lapse effects follow purchase effects across channels and customers. 1 is
  strict proportionality (a visit that lifts purchase 4x more than a call also saves 4x more lapses); 0 is one
  effect for every touch. Selling power (quotes, on-the-spot sales) need not carry over to the relationship
  one for one, so it is estimated rather than assumed.

Both are maximum-likelihood estimates from the treated holders' lapse outcomes, with the calibrated churn
probability as the offset: P(lapse | touched through c) = p_lapse(x) x (1 + kappa x (r_c(x) / r0) ** elasticity).
The profile likelihood at elasticity 0 and 1 is kept, so the report can say how sharply the data decides.
Pure: arrays in, a small frozen result out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

REL_FLOOR = 1e-4                 # relative purchase effects below this are treated as this (log scale)
BOUNDS = (-0.9, 1.0)             # a touch prevents at most 90% of a customer's lapses and at most doubles them
MAX_ELASTICITY = 2.0


@dataclass(frozen=True)
class TransferFit:
    kappa: float
    elasticity: float
    centre: float                 # log r0
    rows: int                     # treated holder rows the fit used
    lapses: int
    nll: dict[str, float]         # negative log-likelihood at elasticity 0, 1 and at the estimate

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


NO_FIT = TransferFit(0.0, 1.0, 0.0, 0, 0, {})


def multiplier(rel: np.ndarray, kappa: float, elasticity: float, centre: float) -> np.ndarray:
    """The relative lapse effect for relative purchase effects ``rel`` (0 where ``rel`` is not positive: a touch
    the purchase side says does nothing is not credited with saving lapses)."""
    r = np.asarray(rel, float)
    out = kappa * np.exp(elasticity * (np.log(np.clip(r, REL_FLOOR, None)) - centre))
    return np.where(r > 0, np.clip(out, *BOUNDS), 0.0)


def _nll(y: np.ndarray, p: np.ndarray, lr: np.ndarray, kappa: float, elasticity: float) -> float:
    q = np.clip(p * (1.0 + np.clip(kappa * np.exp(elasticity * lr), *BOUNDS)), 1e-9, 1 - 1e-9)
    return float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).sum())


def _profile(y: np.ndarray, p: np.ndarray, lr: np.ndarray, elasticity: float) -> tuple[float, float]:
    """Best kappa and its negative log-likelihood at a fixed elasticity."""
    from scipy.optimize import minimize_scalar  # here: loading the parameters must not load SciPy's optimisers

    res = minimize_scalar(lambda k: _nll(y, p, lr, k, elasticity), bounds=BOUNDS, method="bounded",
                          options={"xatol": 1e-6})
    return float(res.x), float(res.fun)


def fit(y: np.ndarray, p_lapse: np.ndarray, rel: np.ndarray) -> TransferFit:
    """Maximum-likelihood kappa and elasticity from treated holders: their lapse label ``y``, calibrated churn
    probability ``p_lapse`` and the relative purchase effect ``rel`` of the channel that touched them.

    Rows whose channel has no purchase effect (``rel`` <= 0) carry no information about the link and are left
    out. Without a lapse among the rest, nothing can be estimated: kappa 0 (no lapse effect is claimed).
    """
    y, p, r = (np.asarray(a, float) for a in (y, p_lapse, rel))
    keep = (r > 0) & np.isfinite(p) & np.isfinite(y)
    y, p, r = y[keep], p[keep], r[keep]
    if len(y) == 0 or y.sum() == 0:
        return TransferFit(0.0, 1.0, 0.0, int(len(y)), int(y.sum()), {})
    centre = float(np.log(np.clip(r, REL_FLOOR, None)).mean())
    lr = np.log(np.clip(r, REL_FLOOR, None)) - centre
    k0, nll0 = _profile(y, p, lr, 0.0)
    k1, nll1 = _profile(y, p, lr, 1.0)
    start = (k0, 0.0) if nll0 <= nll1 else (k1, 1.0)
    from scipy.optimize import minimize

    res = minimize(lambda th: _nll(y, p, lr, th[0], th[1]), np.array(start), method="L-BFGS-B",
                   bounds=[BOUNDS, (0.0, MAX_ELASTICITY)])
    kappa, elasticity, best = float(res.x[0]), float(res.x[1]), float(res.fun)
    if min(nll0, nll1) < best:  # the optimiser never does worse than the profile points it started from
        (kappa, elasticity, best) = (k0, 0.0, nll0) if nll0 <= nll1 else (k1, 1.0, nll1)
    return TransferFit(kappa, elasticity, centre, int(len(y)), int(y.sum()),
                       {"elasticity_0": nll0, "elasticity_1": nll1, "estimate": best})
