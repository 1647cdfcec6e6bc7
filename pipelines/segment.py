"""Rule segments, contact value, ML segments and priority tiers, contact plan and backtest (DVC stage ``segment``).

Scores the as-of snapshot with the calibrated models, assigns the playbook's rule segments and the ML
quadrant and P1-P4 tiers aligned with them, and plans each customer's next touch (channel and date)
under consent, suppression and frequency caps. Backtests both schemes on the most recent snapshot whose
labels have matured (the train stage's test snapshot). Writes ``data/segments/`` (segments.parquet,
cutpoints.json, plan_volume.csv, backtest/*.csv), ``data/reports/segments.json`` (headline in ``data/metrics/``) and
``data/plots/tiers.csv`` (DVC plot); adds the metrics to the train stage's MLflow run.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from pipelines import headline, paths, tabular_tiers, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.io import staged_outputs
from pipelines.params import load_params
from pipelines.segmenting import build

log = logging.getLogger("pipelines.segment")
REPORT, PLOT = paths.report("segments"), paths.plot("tiers")
OUT, BASELINES = paths.SEGMENT_DIR, paths.BASELINE_PLANS


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    if not (params.capabilities.archive and params.capabilities.contact_history):
        tracking.ensure_store()  # the tabular tiers log to MLflow; the book's segments do not
        tabular_tiers.propensity_tiers(params)
        return
    built = build(params)
    seg, cuts, report, tables, volume = (built[k] for k in ("seg", "cuts", "report", "tables", "volume"))
    as_of, sp = pd.Timestamp(params.book.as_of), params.segment
    tiers_plot = tables["priority_tier"][["priority_tier", "realised_purchase_rate", "realised_premium_per_customer"]]
    tiers_plot = tiers_plot.rename(columns={"priority_tier": "tier", "realised_purchase_rate": "ml_purchase_rate",
                                            "realised_premium_per_customer": "ml_premium_per_customer"})
    rule_t = tables["rule_tier"].set_index("rule_tier")
    tiers_plot["rule_purchase_rate"] = tiers_plot["tier"].map(rule_t["realised_purchase_rate"])
    tiers_plot["rule_premium_per_customer"] = tiers_plot["tier"].map(rule_t["realised_premium_per_customer"])
    with staged_outputs() as out:
        out.parquet(seg, OUT / "segments.parquet")
        out.parquet(built["baselines"], BASELINES)
        out.json(cuts.model_dump() | {"fitted_on": str(as_of.date()), "mode": sp.cutpoints}, OUT / "cutpoints.json")
        volume.to_csv(out.path(OUT / "plan_volume.csv"), index=False)
        for name, table in tables.items():
            table.to_csv(out.path(OUT / "backtest" / f"{name}.csv"), index=False)
        tiers_plot.to_csv(out.path(PLOT), index=False)
        headline.write(out, "segments", report)
    tabular_tiers.log_run(report)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("segment", main, base_parser("segment", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
