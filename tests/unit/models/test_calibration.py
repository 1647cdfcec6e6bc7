"""Calibration turns scores into probabilities: properties on data with a known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import calibration
from models.metrics import expected_calibration_error


def _scores(n: int = 40_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 20, n)  # true probabilities, rare positives like a purchase
    y = (rng.random(n) < p).astype(int)
    score = np.sqrt(p)  # a good ranking but not a probability
    return score, y, p


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_fixes_probabilities_and_keeps_the_order(method: str) -> None:
    score, y, _ = _scores()
    cal = calibration.fit(method, score, y)
    cal = json.loads(json.dumps(cal))  # saved as JSON and read back
    test_score, test_y, _ = _scores(seed=1)
    p = calibration.apply(cal, test_score)
    assert expected_calibration_error(test_y, p) < 0.25 * expected_calibration_error(test_y, test_score)
    order = np.argsort(test_score)
    assert np.all(np.diff(p[order]) >= -1e-12)  # monotone: the ranking is unchanged
    assert (p >= 0).all() and (p <= 1).all()


def test_choice_is_cross_validated_and_prefers_the_right_shape() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=30_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-(1.7 * z - 3)))).astype(int)
    score = 1 / (1 + np.exp(-z))  # exactly a sigmoid away from the truth
    cal, brier = calibration.choose(score, y)
    assert set(brier) == set(calibration.METHODS)
    assert cal["method"] == "sigmoid" and cal["a"] == pytest.approx(1.7, abs=0.15)
    assert brier["identity"] > brier["sigmoid"]


def test_curves() -> None:
    score, y, _ = _scores()
    rel = calibration.reliability(y, score, bins=10)
    assert len(rel) == 10 and sum(r["n"] for r in rel) == len(y)
    g = calibration.gains(y, score)
    assert g[0] == {"contacted": 0.0, "captured": 0.0} and g[-1]["captured"] == pytest.approx(1.0)
    assert all(b["captured"] >= a["captured"] for a, b in zip(g, g[1:], strict=False))
    assert g[2]["captured"] > g[2]["contacted"]  # better than random at 10%


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibration.fit("platt-ish", np.array([0.1, 0.2]), np.array([0, 1]))


def test_already_calibrated_scores_are_left_alone_or_barely_moved() -> None:
    """With true probabilities as scores, whatever is chosen must not make calibration worse."""
    _, y, p = _scores(seed=4)
    cal, brier = calibration.choose(p, y)
    assert "identity" in brier
    _, y2, p2 = _scores(seed=5)
    assert expected_calibration_error(y2, calibration.apply(cal, p2)) <= expected_calibration_error(y2, p2) + 0.002
    assert calibration.apply({"method": "identity"}, np.array([-0.1, 0.3, 1.2])).tolist() == [0.0, 0.3, 1.0]


def test_a_gain_within_the_tolerance_keeps_the_simpler_calibrator() -> None:
    """Already calibrated scores: a flexible method can only win by noise, and the margin refuses it."""
    _, y, p = _scores(seed=6)
    cal, brier = calibration.choose(p, y, min_relative_gain=0.01)
    assert cal["method"] == "identity"
    assert min(brier.values()) >= brier["identity"] * 0.99
    # a real miscalibration still wins by far more than the margin
    rng = np.random.default_rng(3)
    z = rng.normal(size=30_000)
    yy = (rng.random(len(z)) < 1 / (1 + np.exp(-(1.7 * z - 3)))).astype(int)
    cal2, _ = calibration.choose(1 / (1 + np.exp(-z)), yy, min_relative_gain=0.01)
    assert cal2["method"] == "sigmoid"


@pytest.mark.parametrize("distortion", ["sqrt", "square", "none", "shifted"])
def test_the_chosen_calibrator_never_worsens_brier_on_held_out_data(distortion: str) -> None:
    """Fit and choose on one sample, score another: Brier is not worse than the raw scores' (within noise)."""
    from sklearn.metrics import brier_score_loss

    warp = {"sqrt": np.sqrt, "square": np.square, "none": lambda p: p,
            "shifted": lambda p: np.clip(p + 0.03, 0, 1)}[distortion]
    _, y, p = _scores(seed=10)
    cal, _ = calibration.choose(warp(p), y, min_relative_gain=0.002)
    _, y2, p2 = _scores(seed=11)
    raw, calibrated = brier_score_loss(y2, warp(p2)), brier_score_loss(y2, calibration.apply(cal, warp(p2)))
    assert calibrated <= raw * 1.001, (distortion, cal["method"], raw, calibrated)
    if distortion != "none":
        assert calibrated < raw  # a real distortion is actually repaired
