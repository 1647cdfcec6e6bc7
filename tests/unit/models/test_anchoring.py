"""Anchoring learned channel levels to randomised campaigns (models/anchoring.py): properties, not numbers."""

from __future__ import annotations

import numpy as np
import pytest

from models import anchoring


def _campaign(n: int, holdout_share: float, effect: float, predicted: float, seed: int,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = (rng.random(n) >= holdout_share).astype(int)
    y = (rng.random(n) < 0.05 + effect * t).astype(float)
    return y, t, np.full(n, predicted)


def test_a_precise_experiment_moves_the_level_and_a_noisy_one_barely() -> None:
    experiments = {"sms": _campaign(400_000, 0.5, 0.001, 0.005, 1),    # precise: the learner is 5x too high
                   "phone": _campaign(2_000, 0.1, 0.01, 0.004, 2),     # noisy
                   "event": _campaign(200_000, 0.5, 0.02, 0.02, 3)}     # precise and agreeing
    anchors = anchoring.anchor(experiments, min_holdout=100, sd=1.0)
    assert anchors["sms"].scale == pytest.approx(anchors["sms"].ate / 0.005, abs=0.1)
    assert anchors["sms"].scale < 0.5 and abs(anchors["event"].scale - 1) < 0.15
    assert abs(anchors["phone"].scale - 1) < abs(anchors["phone"].ate / 0.004 - 1)  # shrunk towards 1
    for a in anchors.values():
        assert a.se > 0 and a.rows > a.holdout > 0 and a.scale >= 0


def test_channels_without_enough_holdouts_or_a_predicted_effect_are_left_alone() -> None:
    experiments = {"letter": _campaign(500, 0.05, 0.01, 0.002, 4), "email": _campaign(50_000, 0.5, 0.0, 0.0, 5)}
    assert anchoring.anchor(experiments, min_holdout=100, sd=1.0) == {}


def test_a_tighter_prior_keeps_the_learned_level_closer() -> None:
    experiments = {"sms": _campaign(20_000, 0.2, 0.0, 0.004, 6)}
    loose, tight = (anchoring.anchor(experiments, 100, sd)["sms"].scale for sd in (1.0, 0.1))
    assert loose < tight < 1.0
