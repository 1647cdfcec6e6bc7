"""How much true incremental value a week's plan delivers, against the best plan under the same constraints.

Only the synthetic book has the truth this needs (the true purchase and lapse probabilities with no contact
and with one touch per channel). The oracle solves the same week-one problem as the plan (the same permitted
touches, channel capacities and agent capacities) with the true values; a plan's share is its true value over
the oracle's. Pure: arrays in, numbers out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import allocation
from models.metrics import spearman


def true_effects(truth: pd.DataFrame, channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """True tau per customer and channel: purchase and lapse (lapse 0 for customers without a policy)."""
    tp = np.stack([truth[f"p_purchase_{c}"] - truth["p_purchase_no_contact"] for c in channels], axis=1)
    tl = np.stack([truth[f"p_lapse_{c}"] - truth["p_lapse_no_contact"] for c in channels], axis=1)
    return tp.astype(float), np.nan_to_num(tl.astype(float))


def choice_vector(channel: pd.Series, channels: tuple[str, ...]) -> np.ndarray:
    """Column index per row of a plan's channel (None: no touch)."""
    idx = pd.Index(channels).get_indexer(channel.fillna("__none__"))
    return np.where(idx >= 0, idx, allocation.NONE)


def random_plan(allowed: np.ndarray, volumes: dict[int, int], seed: int) -> np.ndarray:
    """The same number of touches per channel as a plan, given to random customers permitted that channel."""
    rng = np.random.default_rng(seed)
    out = np.full(len(allowed), allocation.NONE)
    for j, k in sorted(volumes.items()):
        free = np.flatnonzero(allowed[:, j] & (out == allocation.NONE))
        out[rng.choice(free, size=min(k, len(free)), replace=False)] = j
    return out


def shares(true_value: np.ndarray, allowed: np.ndarray, plans: dict[str, np.ndarray], problem: allocation.Problem,
           seed: int = 0) -> dict[str, dict[str, float]]:
    """Each plan's true value, its share of the oracle's, touches, and touches whose true value is negative.

    ``problem`` carries the constraints (its ``value`` is ignored); ``plans`` maps a name to a choice vector.
    """
    masked = np.where(allowed, true_value, -np.inf)
    oracle = allocation.solve(allocation.Problem(masked, problem.channels, problem.capacity, problem.agent,
                                                 problem.agent_capacity))
    ov = allocation.objective(allocation.Problem(masked, problem.channels, {}), oracle)
    first = next(iter(plans.values()))
    volumes = {j: int((first == j).sum()) for j in range(true_value.shape[1]) if (first == j).any()}
    out: dict[str, dict[str, float]] = {}
    for name, choice in {**plans, "random": random_plan(allowed, volumes, seed), "oracle": oracle}.items():
        rows = np.flatnonzero(choice != allocation.NONE)
        v = true_value[rows, choice[rows]]
        out[name] = {"true_value": float(v.sum()), "share_of_oracle": float(v.sum() / ov) if ov > 0 else float("nan"),
                     "touches": int(len(rows)), "negative_value_share": float((v < 0).mean()) if len(rows) else 0.0}
    return out


def effect_accuracy(pred: np.ndarray, true: np.ndarray, channels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per channel: Spearman of predicted vs true tau and both means."""
    out = {}
    for j, c in enumerate(channels):
        p, t = pred[:, j], true[:, j]
        rho = spearman(p, t)
        out[c] = {"spearman": rho, "mean_predicted": float(p.mean()), "mean_true": float(t.mean())}
    return out
