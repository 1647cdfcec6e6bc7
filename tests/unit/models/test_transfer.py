"""The lapse-from-purchase link (models/transfer.py): a known link is recovered, edges say so."""

from __future__ import annotations

import numpy as np
import pytest

from models import transfer


def _treated(n: int, kappa: float, elasticity: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Treated holders with a known link: three channels of very different relative purchase effects."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.3, n)
    rel = rng.choice([0.02, 0.15, 0.8], n) * rng.lognormal(0, 0.3, n)
    centre = np.log(rel).mean()
    q = p * (1 + kappa * np.exp(elasticity * (np.log(rel) - centre)))
    return (rng.random(n) < q).astype(float), p, rel


@pytest.mark.parametrize("elasticity", [0.0, 0.5, 1.0])
def test_a_known_link_is_recovered(elasticity: float) -> None:
    y, p, rel = _treated(200_000, -0.3, elasticity, seed=int(10 * elasticity))
    fit = transfer.fit(y, p, rel)
    assert fit.kappa == pytest.approx(-0.3, abs=0.03)
    assert fit.elasticity == pytest.approx(elasticity, abs=0.15)
    assert fit.rows == len(y) and fit.lapses == int(y.sum())
    # the estimate is at least as likely as both profile points, and the true elasticity's is the closer one
    assert fit.nll["estimate"] <= min(fit.nll["elasticity_0"], fit.nll["elasticity_1"]) + 1e-6
    wrong = "elasticity_1" if elasticity < 0.5 else "elasticity_0"
    assert fit.nll[wrong] > fit.nll["estimate"] + 5


def test_rows_without_a_purchase_effect_or_without_lapses_claim_nothing() -> None:
    y, p, rel = _treated(20_000, -0.3, 1.0, seed=3)
    with_zero = transfer.fit(np.r_[y, np.ones(500)], np.r_[p, np.full(500, 0.1)], np.r_[rel, np.zeros(500)])
    assert with_zero.rows == len(y)  # the 500 rows whose channel has no purchase effect are left out
    none = transfer.fit(np.zeros(1000), np.full(1000, 0.01), np.full(1000, 0.2))
    assert (none.kappa, none.lapses) == (0.0, 0)
    empty = transfer.fit(np.array([]), np.array([]), np.array([]))
    assert empty.kappa == 0.0 and empty.rows == 0


def test_the_multiplier_is_bounded_and_zero_without_a_purchase_effect() -> None:
    rel = np.array([0.0, -0.1, 1e-9, 0.1, 1.0, 1e6])
    m = transfer.multiplier(rel, -0.2, 1.0, np.log(0.1))
    assert m[0] == m[1] == 0.0
    assert m[3] == pytest.approx(-0.2) and m[4] == pytest.approx(-0.9)  # 10x r0 would be -2: capped at -90%
    assert ((m >= transfer.BOUNDS[0]) & (m <= transfer.BOUNDS[1])).all()
    assert (np.diff(m[2:]) <= 0).all()  # a negative kappa: more purchase effect, more lapses saved
