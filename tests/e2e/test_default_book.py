"""The default book end to end up to the tier backtest: the ML tiers must be monotone (slow; runs in CI).

The tiny book is too small for this claim (a few hundred purchases spread over four tiers); the default
book (50,000 customers) is what `make run` builds and what the docs' figures come from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.workspace import BIN, repo_copy, run_cmd

pytestmark = pytest.mark.xdist_group("default_book")


@pytest.mark.slow
def test_default_book_tiers_are_monotone_and_beat_the_rules(tmp_path: Path) -> None:
    root = repo_copy(tmp_path)
    proc = run_cmd([str(BIN / "dvc"), "repro", "segment"], root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the truth is its own stage, which nothing up to segment waits for (make run runs it beside the others)
    assert "'truth'" not in proc.stdout and not (root / "data/synthetic/truth.parquet").exists()
    bt = json.loads((root / "data/reports/segments.json").read_text(encoding="utf-8"))["backtest"]
    assert bt["customers"] > 40_000
    assert bt["tiers_monotone_purchase_rate"], bt["tiers"]
    assert bt["tiers_monotone_premium"], bt["tiers"]
    assert bt["pamper_vs_rule_pamper"]["customers_ml"] == bt["pamper_vs_rule_pamper"]["customers_rule"]
    assert bt["pamper_vs_rule_pamper"]["uplift_cny"] > 0, bt["pamper_vs_rule_pamper"]
    assert bt["p1_vs_rule_top"]["uplift_cny"] > 0, bt["p1_vs_rule_top"]
