"""One line that says how the run went, for the end of ``make run`` (not a DVC stage; it only reads).

    tiers P1 2,494 / P2 7,483 / P3 14,965 / P4 24,943 | AUC of the calibrated models on the test rows:
    purchase 0.738, lapse 0.776 | week one: 31,598 touches planned | report data/reports/report.html, ...

Every AUC printed says what it measured: these are the calibrated models' (what the score file carries, as in
the registry's ``test_roc_auc`` tags) on the test snapshot, or a tabular source's test rows.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from pipelines import paths

log = logging.getLogger("pipelines.summary")


def _metrics(stage: str) -> dict[str, Any]:
    path = paths.metrics(stage)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _tiers() -> dict[str, int]:
    path = paths.report("segments")
    if not path.is_file():
        return {}
    tiers = json.loads(path.read_text(encoding="utf-8")).get("scoring", {}).get("tiers", {})
    return {str(t): int(n) for t, n in tiers.items()}


def line() -> str:
    """The one-line result of the last run, from the headline metrics (missing parts are left out)."""
    seg, cal = _metrics("segments"), _metrics("calibration")
    parts = []
    tiers = _tiers()
    if tiers:
        parts.append("tiers " + " / ".join(f"{t} {n:,}" for t, n in tiers.items()))
    aucs = [f"{m} {cal[f'{m}_auc']:.3f}" for m in ("purchase", "lapse") if f"{m}_auc" in cal]
    if aucs:
        parts.append("AUC of the calibrated models on the test rows: " + ", ".join(aucs))
    if "week1_touches" in seg:
        parts.append(f"week one: {int(seg['week1_touches']):,} touches planned")
    truth = _metrics("truth_check")
    if "plan_share" in truth:
        parts.append(f"{truth['plan_share']:.0%} of the oracle plan's true value")
    where = (f"report {paths.REPORT_HTML}" if paths.REPORT_HTML.is_file() else "") + f", scores {paths.SCORES}/"
    parts.append(where.lstrip(", ") + ", metrics: .venv/bin/dvc metrics show")
    return " | ".join(parts) if len(parts) > 1 else "no results yet: run `make run` (dvc repro)"


def main() -> int:
    sys.stdout.write(line() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
