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
