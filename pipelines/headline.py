"""The few numbers per stage that DVC compares across commits and experiments (``data/metrics/<stage>.json``).

A stage's full report (``data/reports/<stage>.json``) is nested and long; ``dvc metrics show`` of it all is
one row thousands of characters wide. The headline is flat: short names, numbers only, chosen here once per
stage. Keys a report does not have (a tabular source has no lapse model, a skipped stage has nothing) are
left out, so the same code serves every source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipelines import paths


def _max_reject_share(report: dict[str, Any]) -> Any:
    shares = [t.get("reject_share") for t in report.get("tables", {}).values() if isinstance(t, dict)]
    return max((s for s in shares if isinstance(s, int | float)), default=None)


# Few and short on purpose: `dvc metrics show` makes one column of every name across all files, so the union
# must fit a terminal. Everything else stays in the detailed reports.
HEADLINES: dict[str, dict[str, str | Callable[[dict[str, Any]], Any]]] = {
    "validation": {"reject_share": _max_reject_share},
    "features": {"rows": "rows"},
    "train": {"logistic_auc": "models.purchase.logistic.roc_auc", "value_gini": "models.value.lightgbm.gini"},
    "calibration": {f"{m}_{k}": f"{m}.test.{src}" for m in ("purchase", "lapse")
                    for k, src in (("auc", "roc_auc"), ("ece", "ece"))},
    "uplift": {"qini": "holdout_evaluation.pooled.qini_uplift",
               "qini_propensity": "holdout_evaluation.pooled.qini_propensity"},
    "segments": {"P1": "scoring.tiers.P1", "week1_touches": "plan.week1_touches_total"},
    "truth_check": {f"{k}_share": f"plan.{src}.share_of_oracle"
                    for k, src in (("plan", "plan"), ("propensity", "propensity"), ("rule", "rule_playbook"))},
}


def _get(report: dict[str, Any], dotted: str) -> Any:
    node: Any = report
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def headline(stage: str, report: dict[str, Any]) -> dict[str, float]:
    """The stage's headline numbers found in ``report`` (booleans as 0/1; missing and non-finite left out)."""
    out: dict[str, float] = {}
    for name, where in HEADLINES[stage].items():
        v = where(report) if callable(where) else _get(report, where)
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int | float) and math.isfinite(v):
            out[name] = round(float(v), 6) if isinstance(v, float) else v
    return out


def write(out: Any, stage: str, report: dict[str, Any]) -> None:
    """Stage ``report`` and its headline into ``out`` (a ``pipelines.io.staged_outputs`` writer)."""
    out.json(report, paths.report(stage))
    out.json(headline(stage, report), paths.metrics(stage))
