"""Promotion decisions and the champion history: rollbacks go back in history order, and a journal entry left by
a killed run is completed, never re-interpreted."""

from __future__ import annotations

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
                  slice_min_auc=0.55)


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
