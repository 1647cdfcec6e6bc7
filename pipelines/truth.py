"""The synthetic book's ground truth (DVC stage ``truth``): ``data/synthetic/truth.parquet``, read by
``truth_check`` only, and its headline shares in ``data/reports/truth.json``.

Apart from ``generate`` because nothing but the evaluation needs it: ``make run`` (``pipelines/repro.sh``) runs
this stage at low priority beside the rest of the pipeline, on the core the stages before ``truth_check`` leave
idle. It simulates the book's history again from the same seed (the same world ``generate`` extracts the tables
from; the tables do not depend on the truth) and runs the truth's scenarios forward from ``as_of`` in a process
per core.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from features.simulator.book import simulate_truth, truth_summary
from pipelines import paths
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.io import staged_outputs
from pipelines.params import load_params
from pipelines.stage_needs import skip_reason

log = logging.getLogger("pipelines.truth")
TRUTH = paths.TRUTH


def skip(reason: str) -> None:
    """An empty truth and a report that says why (DVC needs the stage's outputs to exist)."""
    log.info("truth skipped: %s", reason)
    with staged_outputs() as out:
        out.parquet(pd.DataFrame({"customer_id": pd.Series(dtype="string")}), TRUTH)
        out.json({"skipped": reason}, paths.report("truth"))


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    reason = skip_reason("truth", params.capabilities)
    if reason:
        skip(reason)
        return
    sp = params.synthetic()
    log.info("truth of profile '%s': %s customers, %s replicates of %s days from %s", params.book.profile,
             f"{sp.size.n_customers:,}", sp.truth_replicates, sp.horizon_days, sp.as_of)
    # the scenarios are independent: one process per core (the same truth, about half the time on 2 cores)
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ProcessPoolExecutor(workers) as pool:
        truth = simulate_truth(sp, progress=progress_logger("truth").info, mapper=pool.map if workers > 1 else map)
    with staged_outputs() as out:
        out.parquet(truth, TRUTH)
        out.json({"profile": params.book.profile, "rows": len(truth), "replicates": sp.truth_replicates,
                  **truth_summary(truth)}, paths.report("truth"))
    log.info("wrote %s (%s customers)", TRUTH, f"{len(truth):,}")


def cli(argv: list[str] | None = None) -> int:
    return run_stage("truth", main, base_parser("truth", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
