"""Promotion decisions and the champion history: rollbacks go back in history order, and a journal entry left by
a killed run is completed, never re-interpreted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import promotion as pr

A, B, C = ({"purchase": k, "lapse": k, "value": k} for k in (1, 2, 3))


def _promoted(v: dict[str, int]) -> dict:
    return {"event": "promoted", "versions": v}


def test_rollbacks_walk_back_through_the_champions_in_order() -> None:
    h = [_promoted(A), _promoted(B), _promoted(C)]
    assert pr.champion_stack(h) == [A, B, C]
    assert pr.rollback_target(h, C) == B
    h.append({"event": "rollback", "versions": B, "from": C})
    assert pr.champion_stack(h) == [A, B]
    assert pr.rollback_target(h, B) == A  # a second rollback goes further back, never forward to C
    h.append({"event": "rollback", "versions": A, "from": B})
    assert pr.rollback_target(h, A) is None


def test_pending_entries_are_not_champions_and_complete_only_when_delivered() -> None:
    h = [_promoted(A), _promoted(B), {"event": "pending", "action": "rollback", "versions": A, "from": B}]
    assert pr.champion_stack(h) == [A, B] and pr.pending(h) is not None
    assert pr.completion(h, B) is None  # killed before its delivery: nothing to complete (resume instead)
    done = pr.completion(h, A)
    assert done == {"event": "rollback", "versions": A, "from": B, "completed_by": "repair"}
    assert pr.champion_stack([*h, done]) == [A]


def test_a_champion_moved_outside_the_history_rolls_back_to_the_last_recorded_one() -> None:
    assert pr.rollback_target([_promoted(A), _promoted(B)], C) == B
    assert pr.rollback_target([], A) is None


def test_decide() -> None:
    ok = [{"gate": "x", "passed": True, "detail": ""}]
    bad = [{"gate": "purchase.auc_floor", "passed": False, "detail": "AUC 0.5"}]
    assert pr.decide(ok, True, False)[0] == "promoted"
    assert pr.decide(bad, True, False) == ("kept", "gates failed: purchase.auc_floor: AUC 0.5")
    assert pr.decide(bad, False, False)[0] == "failed"
    assert pr.decide(bad, True, True)[0] == "promoted"


G = pr.GateParams(min_test_positives=10, min_auc=0.6, max_ece=0.02, auc_tolerance=0.01, gini_tolerance=0.02,
                  require_monotone_tiers=True, logistic_tolerance=0.01, max_champion_age_days=120,
                  slice_min_auc=0.55, max_tier_churn=0.4)


def _metrics(auc: float, ece: float = 0.01, gini: float = 0.5) -> dict:
    return {"purchase": {"roc_auc": auc, "ece": ece, "positives": 50},
            "lapse": {"roc_auc": auc, "ece": ece, "positives": 50}, "value": {"gini": gini}}


def test_the_logistic_baseline_is_a_gate_not_just_a_report() -> None:
    checks = pr.gates(G, _metrics(0.70), None, True, [], logistic={"purchase": 0.72, "lapse": 0.65})
    verdict = {c["gate"]: c["passed"] for c in checks}
    assert verdict["purchase.vs_logistic"] is False and verdict["lapse.vs_logistic"] is True
    assert pr.decide(checks, False, False)[0] == "failed"


def test_a_stale_champion_gives_way_to_a_challenger_that_passes_every_absolute_gate() -> None:
    checks = pr.gates(G, _metrics(0.70), _metrics(0.75), True, [], logistic={"purchase": 0.6, "lapse": 0.6})
    assert pr.decide(checks, True, False, champion_age_days=30, max_age_days=120)[0] == "kept"
    decision, why = pr.decide(checks, True, False, champion_age_days=200, max_age_days=120)
    assert decision == "promoted" and "200 days old" in why and "auc_vs_champion" in why
    floor = pr.gates(G, _metrics(0.55), _metrics(0.75), True, [])  # below the absolute floor: never waived
    assert pr.decide(floor, True, False, champion_age_days=200, max_age_days=120)[0] == "kept"


def test_a_kept_champion_that_fails_its_own_floors_raises_the_alarm() -> None:
    assert pr.degraded(_metrics(0.70), G) == []
    alarm = pr.degraded(_metrics(0.58, ece=0.05), G)
    assert len(alarm) == 4 and "purchase AUC 0.5800 below the floor 0.6" in alarm[0]


def test_the_canary_stops_broken_scores_and_too_much_tier_churn() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    champ = pd.DataFrame({"p_purchase": rng.uniform(0, 0.3, n), "p_lapse": rng.uniform(0, 0.1, n),
                          "expected_premium": rng.lognormal(8, 1, n)})
    close = champ * np.exp(rng.normal(0, 0.05, (n, 3)))  # a retrain that moves scores a little
    checks, stats = pr.canary(close, champ, G)
    assert all(c["passed"] for c in checks) and stats["tier_churn"] < 0.2 and stats["spearman"] > 0.9
    shuffled = champ.sample(frac=1, random_state=1).reset_index(drop=True)  # a model that ranks at random
    checks, stats = pr.canary(shuffled, champ, G)
    churn = next(c for c in checks if c["gate"] == "canary.tier_churn")
    assert not churn["passed"] and stats["tier_churn"] > G.max_tier_churn
    broken = close.copy()
    broken.loc[[3, 4], "p_purchase"] = [np.nan, 1.7]
    checks, _ = pr.canary(broken, None, G)  # no champion yet: the finite check still applies
    assert [c["gate"] for c in checks] == ["canary.finite"] and not checks[0]["passed"]
    assert "2 NaN, infinite or out-of-range" in checks[0]["detail"]
    decision, why = pr.decide(checks, has_champion=True, already=False, champion_age_days=500, max_age_days=120)
    assert decision == "kept" and "canary.finite" in why  # never waived for a stale champion
