"""Scoring a workspace's as-of snapshot: each model building its own design matrix against one shared matrix.

``pipelines.scoring.score_with`` (segment, retrain, the Spark engine's batches) runs the purchase, lapse and value
models on the same rows; they share a feature spec, and ``scoring.predict_each`` builds its matrix once. This
times both ways, alternated in one process, on a workspace that ``pipeline_bench.py`` (or ``make run``) left
behind, and checks that the outputs are equal.

    .venv/bin/python benchmarks/scoring_matrix_bench.py --workspace <pipeline_bench's ws_5000000> --rounds 2
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipelines import scoring  # noqa: E402
from pipelines.errors import UserError, require  # noqa: E402
from pipelines.params import load_params  # noqa: E402

log = logging.getLogger("scoring_matrix_bench")
VARIANTS = ("each model its own matrix", "scoring.predict_each")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, default=ROOT, help="a directory with params.yaml and data/")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.chdir(args.workspace)
    features = Path("data/features/features.parquet")
    try:
        p = load_params("params.yaml")
        require([features], "run the pipeline in the workspace first (make run, or benchmarks/pipeline_bench.py)")
        loaded = {n: scoring.load_model(n, Path("data/models"), Path("data/calibrators")) for n in scoring.SCORED}
    except UserError as e:
        log.error("%s: %s", args.workspace, e)
        return 2
    t = time.perf_counter()
    df = scoring.read_scoring_rows(features, p.book.as_of, p.capabilities)
    log.info("read %s scoring rows in %.1fs", f"{len(df):,}", time.perf_counter() - t)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    ref: dict[str, np.ndarray] | None = None
    for r in range(args.rounds):
        for variant in VARIANTS:
            t = time.perf_counter()
            out = ({n: m.predict(df) for n, m in loaded.items()} if variant == VARIANTS[0]
                   else scoring.predict_each(loaded, df))
            times[variant].append(time.perf_counter() - t)
            ref = ref or out
            if any(not np.array_equal(out[k], ref[k]) for k in ref):
                log.error("%s gave different outputs", variant)
                return 1
            log.info("round %d: %s: %.1fs", r + 1, variant, times[variant][-1])
    print(f"| rows | {' | '.join(VARIANTS)} | ratio of medians |\n|---|---|---|---|")
    med = [statistics.median(times[v]) for v in VARIANTS]
    print(f"| {len(df):,} | " + " | ".join(", ".join(f"{x:.1f}" for x in times[v]) for v in VARIANTS)
          + f" | {med[1] / med[0]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
