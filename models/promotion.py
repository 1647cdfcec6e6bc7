"""Promotion decisions: the retraining gates, the decision they lead to, and which champion a rollback restores.

Pure: metrics, typed parameters and the promotion history (a list of dicts) in; checks and decisions out.
``pipelines/retrain.py`` wires them to the registry, the delivery folder and ``runs/history.jsonl``.

The history is an append-only journal. Before a promotion or rollback changes anything, a ``pending`` entry
records what it is about to do; once the registry alias has moved, the final ``promoted`` or ``rollback``
entry follows. A run killed in between leaves the ``pending`` entry as the last one: the next run completes
it (or, if nothing was delivered yet, resumes it) instead of guessing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

Versions = dict[str, int]


class GateParams(BaseModel):
    """What a challenger must show before it replaces the champion (docs/retraining.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_test_positives: int = Field(ge=1)    # enough positives on the test snapshot to trust the comparison
    min_auc: float = Field(ge=0.5, le=1)     # absolute floor (the first run has only these)
    max_ece: float = Field(gt=0, le=1)       # calibration error ceiling
    auc_tolerance: float = Field(ge=0, le=0.5)   # AUC may be lower than the champion's by at most this
    gini_tolerance: float = Field(ge=0, le=1)    # value model Gini, likewise
    require_monotone_tiers: bool
    logistic_tolerance: float = Field(ge=0, le=0.5)  # AUC may be below the logistic baseline's by at most this
    max_champion_age_days: int = Field(ge=1)     # an older champion gives way to any challenger passing the floors
    slice_min_auc: float = Field(ge=0.5, le=1)   # every slice with enough positives (models/slices.py) at least this
    max_tier_churn: float = Field(gt=0, le=1)    # canary: share of live customers whose tier the challenger changes


# gates that need no champion
ABSOLUTE = ("positives", "auc_floor", "ece", "vs_logistic", "monotone", "drift", "slices", "finite")
CANARY_TIERS = (0.05, 0.20, 0.50)  # cumulative shares of P1, P1-P2, P1-P3 by expected new premium


def gates(g: GateParams, chal: dict[str, dict[str, float]], champ: dict[str, dict[str, float]] | None,
          tiers_monotone: bool, drift_block: list[str], logistic: dict[str, float] | None = None,
          ) -> list[dict[str, Any]]:
    """Every gate's verdict for the challenger: absolute floors, the logistic baseline on the same test rows
    (``logistic``: AUC per model), and the champion when there is one."""
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"gate": name, "passed": bool(ok), "detail": detail})

    for m in ("purchase", "lapse"):
        c = chal[m]
        add(f"{m}.positives", c["positives"] >= g.min_test_positives,
            f"{c['positives']} positives on the test snapshot (need {g.min_test_positives})")
        add(f"{m}.auc_floor", c["roc_auc"] >= g.min_auc, f"AUC {c['roc_auc']:.4f} (floor {g.min_auc})")
        add(f"{m}.ece", c["ece"] <= g.max_ece, f"ECE {c['ece']:.4f} (ceiling {g.max_ece})")
        if logistic and m in logistic:
            add(f"{m}.vs_logistic", c["roc_auc"] >= logistic[m] - g.logistic_tolerance,
                f"AUC {c['roc_auc']:.4f} vs logistic baseline {logistic[m]:.4f} (tolerance {g.logistic_tolerance})")
        if champ is not None:
            add(f"{m}.auc_vs_champion", c["roc_auc"] >= champ[m]["roc_auc"] - g.auc_tolerance,
                f"AUC {c['roc_auc']:.4f} vs champion {champ[m]['roc_auc']:.4f} (tolerance {g.auc_tolerance})")
    if champ is not None:
        c, k = chal["value"], champ["value"]
        add("value.gini_vs_champion", c["gini"] >= k["gini"] - g.gini_tolerance,
            f"Gini {c['gini']:.4f} vs champion {k['gini']:.4f} (tolerance {g.gini_tolerance})")
    if g.require_monotone_tiers:
        add("tiers.monotone", tiers_monotone, "P1..P4 realised purchase rate on the backtest snapshot "
            + ("decreases" if tiers_monotone else "is NOT monotone"))
    add("drift", not drift_block, "no score drift beyond the block threshold" if not drift_block
        else f"score drift blocks promotion: {', '.join(drift_block)}")
    return checks


def _canary_tiers(score: np.ndarray) -> np.ndarray:
    order = np.argsort(-score, kind="stable")
    tier = np.full(len(score), 3)
    for t, share in reversed(list(enumerate(CANARY_TIERS))):
        tier[order[: int(round(share * len(score)))]] = t
    return tier


def canary(chal: pd.DataFrame, champ: pd.DataFrame | None, g: GateParams) -> tuple[list[dict[str, Any]],
                                                                                     dict[str, float]]:
    """The challenger's scores on the live snapshot, before anything is delivered: every score finite and in
    range (absolute), and, beside the champion's scores of the same customers, how many customers change
    tier (P1 5% / P2 15% / P3 30% / P4 by expected new premium). A model that passed its tests on last month's
    snapshot can still break on this month's rows, or reshuffle the agents' lists far more than a retrain should.
    ``chal``/``champ``: p_purchase, p_lapse, expected_premium per customer, same row order."""
    checks: list[dict[str, Any]] = []
    probs = chal[["p_purchase", "p_lapse"]].to_numpy(float)
    premium = chal["expected_premium"].to_numpy(float)
    bad = int((~np.isfinite(probs)).any(axis=1).sum() + (~np.isfinite(premium)).sum()
              + ((probs < 0) | (probs > 1)).any(axis=1).sum() + (premium < 0).sum())
    checks.append({"gate": "canary.finite", "passed": bad == 0,
                   "detail": f"{len(chal):,} live customers scored; {bad:,} NaN, infinite or out-of-range score(s)"})
    stats: dict[str, float] = {"customers": float(len(chal)), "bad_scores": float(bad)}
    if champ is not None and bad == 0:
        value_chal = chal["p_purchase"].to_numpy(float) * premium
        value_champ = champ["p_purchase"].to_numpy(float) * champ["expected_premium"].to_numpy(float)
        churn = float((_canary_tiers(value_chal) != _canary_tiers(value_champ)).mean())
        stats |= {"tier_churn": churn, "spearman": float(pd.Series(value_chal).corr(pd.Series(value_champ),
                                                                                     method="spearman"))}
        checks.append({"gate": "canary.tier_churn", "passed": churn <= g.max_tier_churn,
                       "detail": f"{churn:.1%} of live customers change tier against the champion (at most "
                                 f"{g.max_tier_churn:.0%}; Spearman {stats['spearman']:.3f})"})
    return checks, stats


def decide(checks: list[dict[str, Any]], has_champion: bool, already: bool, champion_age_days: int | None = None,
           max_age_days: int | None = None) -> tuple[str, str]:
    """(decision, why): ``promoted`` (or already champion), ``kept`` the champion, or ``failed`` (first run).

    A champion older than ``max_age_days`` is not kept over a challenger that passes every absolute gate: a
    stale model that merely scored better on an old comparison is the larger risk."""
    failed = [c for c in checks if not c["passed"]]
    if already:
        return "promoted", "the challenger is already the champion (same registered versions): nothing to promote"
    if not failed:
        return "promoted", "all gates hold" + ("" if has_champion else " (first run: absolute gates)")
    if not has_champion:
        return "failed", "first run and the gates do not hold: no champion to fall back on, nothing delivered"
    stale = champion_age_days is not None and max_age_days is not None and champion_age_days > max_age_days
    if stale and not any(c["gate"].split(".")[-1] in ABSOLUTE for c in failed):
        return "promoted", (f"the champion is {champion_age_days} days old (max {max_age_days}) and the challenger "
                            "passes every absolute gate: " + "; ".join(c["gate"] for c in failed) + " waived")
    return "kept", "gates failed: " + "; ".join(f"{c['gate']}: {c['detail']}" for c in failed)


def degraded(metrics: dict[str, dict[str, float]], g: GateParams) -> list[str]:
    """What a kept champion now fails on new matured data (its own floors): the alarm a scheduler must see."""
    out = []
    for m in ("purchase", "lapse"):
        c = metrics.get(m)
        if not c:
            continue
        if c["roc_auc"] < g.min_auc:
            out.append(f"{m} AUC {c['roc_auc']:.4f} below the floor {g.min_auc}")
        if c["ece"] > g.max_ece:
            out.append(f"{m} ECE {c['ece']:.4f} above the ceiling {g.max_ece}")
    return out


def _v(versions: dict[str, Any]) -> Versions:
    return {str(m): int(v) for m, v in versions.items()}


def champion_stack(history: list[dict[str, Any]]) -> list[Versions]:
    """The champions in history order, as a stack: a promotion pushes; a rollback pops back to its target."""
    stack: list[Versions] = []
    for h in history:
        if h.get("event") == "promoted":
            v = _v(h["versions"])
            if not stack or stack[-1] != v:
                stack.append(v)
        elif h.get("event") == "rollback":
            v = _v(h["versions"])
            while stack and stack[-1] != v:
                stack.pop()
            if not stack:
                stack.append(v)
    return stack


def rollback_target(history: list[dict[str, Any]], current: Versions) -> Versions | None:
    """The champion before ``current`` in history order, or None when there is none."""
    stack = champion_stack(history)
    below = [i for i, v in enumerate(stack) if v == _v(current)]
    if below:
        i = below[-1]
        return stack[i - 1] if i > 0 else None
    return stack[-1] if stack else None  # the alias was moved outside the history: go back to its last champion


def pending(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The unfinished promotion or rollback a killed run left (the journal's last entry), if any."""
    return history[-1] if history and history[-1].get("event") == "pending" else None


def completion(history: list[dict[str, Any]], delivered: Versions | None) -> dict[str, Any] | None:
    """The final entry that completes the pending action, when what it meant to deliver is delivered."""
    p = pending(history)
    if p is None or delivered is None or _v(p["versions"]) != _v(delivered):
        return None
    return {k: v for k, v in p.items() if k not in ("event", "action")} | {"event": p["action"],
                                                                          "completed_by": "repair"}
