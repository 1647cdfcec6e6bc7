"""The synthetic book's ground truth (DVC stage ``truth``): ``data/synthetic/truth.parquet``, read by
``truth_check`` only, and its headline shares in ``data/reports/truth.json``.

Apart from ``generate`` because nothing but the evaluation needs it: ``make run`` (``pipelines/repro.sh``) runs
this stage at low priority beside the rest of the pipeline, on the core the stages before ``truth_check`` leave
idle. It restores the world ``generate`` extracted the tables from (``data/synthetic/world.npz``, its arrays at the
end of the history; the tables do not depend on the truth) and runs the truth's scenarios forward from ``as_of``
in a process per core.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from features.simulator.book import simulate_truth, truth_summary
from features.simulator.state import world_from_arrays
from pipelines import paths
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.errors import InputError, require
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
    require((paths.WORLD,), "run the generate stage first (dvc repro generate)")
    with np.load(paths.WORLD) as saved:
        try:
            world = world_from_arrays(sp, dict(saved))
        except ValueError as e:
            raise InputError(f"{paths.WORLD}: {e}; run the generate stage again (dvc repro generate)") from e
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ProcessPoolExecutor(workers) as pool:
        truth = simulate_truth(sp, progress=progress_logger("truth").info, mapper=pool.map if workers > 1 else map,
                               world=world)
    with staged_outputs() as out:
        out.parquet(truth, TRUTH)
        out.json({"profile": params.book.profile, "rows": len(truth), "replicates": sp.truth_replicates,
                  **truth_summary(truth)}, paths.report("truth"))
    log.info("wrote %s (%s customers)", TRUTH, f"{len(truth):,}")


def cli(argv: list[str] | None = None) -> int:
    return run_stage("truth", main, base_parser("truth", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
