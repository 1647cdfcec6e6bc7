"""The report's first screen: this run's counts, versions, run and commit beside the previous differing report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import paths, report_run


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def test_the_summary_reads_the_headline_metrics_and_the_registered_versions(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(paths.metrics("segments"), {"P1": 10, "week1_touches": 120})
    _write(paths.metrics("calibration"), {"purchase_auc": 0.74, "lapse_auc": 0.78})
    _write(paths.report("segments"), {"scoring": {"tiers": {"P1": 10, "P2": 20, "P3": 30, "P4": 40}}})
    _write(paths.REGISTRY, {"run_id": "abc123", "models": {"purchase": {"name": "cp-purchase", "version": 7}}})
    s = report_run.current("2026-09-30")
    assert s["customers"] == 100 and s["tier_P4"] == 40 and s["week1_touches"] == 120
    assert s["models"] == {"purchase": "cp-purchase v7"} and s["run_id"] == "abc123"
    assert "plan_share" not in s  # no truth check (a user's own book): left out, not shown as zero


def test_the_first_screen_compares_with_the_latest_report_that_differs(tmp_path: Path) -> None:
    history = tmp_path / "report_history.jsonl"
    assert report_run.previous({"as_of": "2026-09-30"}, history) is None
    old = {"as_of": "2026-08-31", "customers": 90, "purchase_auc": 0.73, "plan_share": 0.80, "commit": "aaa",
           "run_id": "r1", "models": {"purchase": "cp-purchase v6"}}
    now = {**old, "as_of": "2026-09-30", "customers": 100, "purchase_auc": 0.74, "plan_share": 0.86,
           "commit": "bbb-dirty", "run_id": "r2", "models": {"purchase": "cp-purchase v7"}}
    report_run.append(old, history)
    report_run.append(now | {"commit": "bbb"}, history)  # the same run reported again (dirty flag aside)
    history.write_text(history.read_text(encoding="utf-8") + '{"as_of": "2026-', encoding="utf-8")  # a cut line
    before = report_run.previous(now, history)
    assert before is not None and before["run_id"] == "r1"
    page = report_run.first_screen(now, before)
    for text in ("cp-purchase v7 (new versions)", "r2", "bbb with uncommitted changes", "as of 2026-08-31", ">+10<",
                 "+0.010", "+6.0 pt", "86.0%"):
        assert text in page, text
    assert "no earlier run" in report_run.first_screen(now, None)
