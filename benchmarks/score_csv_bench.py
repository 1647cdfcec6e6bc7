"""Writing the score file's CSV: floats ``%.10g`` in NumPy and Arrow (pipelines/gformat.py) or through Python's ``%``.

``pipeline_bench.py``'s tiled books repeat each customer's values 100 times at 5M, so the CSV writer, which
formats each distinct float once per chunk, sees about 50k distinct values per column where a real 5M book has
millions. This takes a workspace's score file (``data/scores/scores_<as_of>.parquet``), tiles it to ``--rows``
rows and gives every float column with many distinct values a relative jitter of at most 1e-6, so the columns
are as distinct as a real book's (calibrated probabilities, with few values, stay as they are). It then writes the
CSV both ways, alternated in one process, and checks that the bytes are equal.

    .venv/bin/python benchmarks/score_csv_bench.py --workspace . --rows 5000000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipelines import delivery, gformat  # noqa: E402

log = logging.getLogger("score_csv_bench")
VARIANTS = ("Python's % per distinct value", "pipelines/gformat.py")


def realistic(scores: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """``scores`` tiled to ``rows`` rows, ids kept unique, many-valued float columns made distinct."""
    copies = -(-rows // len(scores))
    df = pd.concat([scores] * copies, ignore_index=True).iloc[:rows].copy()
    df["customer_id"] = df["customer_id"].astype(str) + "-" + (np.arange(len(df)) // len(scores)).astype(str)
    rng = np.random.default_rng(seed)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.StringDtype):  # one Arrow chunk per column, as the export's frame has
            df[c] = pd.Series(pd.arrays.ArrowStringArray(pa.array(df[c]).combine_chunks()), index=df.index)
        if df[c].dtype.kind == "f" and scores[c].nunique() > 1000:
            df[c] = df[c] * (1 + rng.uniform(-1e-6, 1e-6, len(df)))
    return df


@contextmanager
def variant(name: str) -> Iterator[None]:
    """The writer as it is, or with the ``%.10g`` formatter refused (every float through Python's ``%``)."""
    real = gformat.precision
    if name == VARIANTS[0]:
        gformat.precision = lambda fmt: None
    try:
        yield
    finally:
        gformat.precision = real


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, default=ROOT, help="a directory whose data/scores/ holds a score file")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    found = sorted((args.workspace / "data/scores").glob("scores_*.parquet"))
    if not found:
        log.error("no data/scores/scores_*.parquet in %s: run the pipeline there first (make run)", args.workspace)
        return 2
    df = realistic(pd.read_parquet(found[-1]), args.rows)
    floats = [c for c in df.columns if df[c].dtype.kind == "f"]
    log.info("%s rows from %s; distinct values per float column: %s", f"{len(df):,}", found[-1].name,
             ", ".join(f"{c} {df[c].nunique():,}" for c in floats))
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    digests: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.csv"
        for r in range(args.rounds):
            for name in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:  # alternated: a noisy machine hits both
                with variant(name):
                    start = time.perf_counter()
                    digests.add(delivery.write_csv(df, path, ","))  # the file's SHA-256, hashed as written
                    times[name].append(time.perf_counter() - start)
                log.info("round %d, %s: %.2f s", r + 1, name, times[name][-1])
    if len(digests) != 1:
        log.error("the two writers wrote different bytes")
        return 1
    base = statistics.median(times[VARIANTS[0]])
    print("| rows | float formatting | median s | rounds | ratio |\n|---|---|---|---|---|")
    for name in VARIANTS:
        med = statistics.median(times[name])
        print(f"| {len(df):,} | {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} | "
              f"{med / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
