"""Score a feature table on Apache Spark with the trained model set: ``python -m pipelines.spark_score``.

The cluster half of ``features.engine.kind: spark`` (docs/spark.md). It reads the feature table from
any path Spark reads (the Spark features job's partitioned Parquet, or ``data/features``), keeps the
scoring snapshot (``book.as_of``, or ``--all`` for every snapshot), applies the native model files
(LightGBM text, meta.json, JSON calibrators) on the executors with ``mapInPandas`` and the pipeline's own
scoring function, and writes score partitions (``customer_id``, ``snapshot_date``, ``p_purchase``,
``p_lapse``, ``expected_premium``) partitioned by ``snapshot_date``. The segment stage of a Spark run
scores its rows through the same function (``score_pandas``), so the score file's probabilities are
these numbers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.snapshots.definitions import KEYS
from pipelines import paths, scoring, spark_engine
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError
from pipelines.params import SparkParams, load_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("pipelines.spark_score")
SCHEMA = "customer_id STRING, snapshot_date DATE, p_purchase DOUBLE, p_lapse DOUBLE, expected_premium DOUBLE"


def score_frame(df: DataFrame, models: Path = paths.MODELS, calibrators: Path = paths.CALIBRATORS) -> DataFrame:
    """Calibrated scores of every row of ``df`` on the executors, with the pipeline's own prediction function.

    The native model files travel to the executors as text and are loaded there once per task; each batch
    goes through ``pipelines.scoring.score_with``, the function the DuckDB path uses, so the scores are
    the same numbers.
    """
    texts = scoring.model_texts(models, calibrators)

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        loaded = scoring.models_from_texts(texts)
        for batch in batches:
            scores = scoring.score_with(loaded, batch)
            yield pd.concat([batch[KEYS].reset_index(drop=True), scores.reset_index(drop=True)], axis=1)

    return df.mapInPandas(apply, SCHEMA)  # type: ignore[arg-type]


def score_pandas(frame: pd.DataFrame, sp: SparkParams, models: Path = paths.MODELS,
                 calibrators: Path = paths.CALIBRATORS, spark: SparkSession | None = None) -> pd.DataFrame:
    """``scoring.score`` of ``frame``'s rows, computed on Spark; same index as ``frame``.

    The session stays up for the rest of the process (a stage scores more than one snapshot).
    """
    spark = spark or spark_engine.session(sp, "contact-priority-score")
    scored = pd.DataFrame(score_frame(spark.createDataFrame(frame.reset_index(drop=True)), models,
                                      calibrators).toPandas())
    scored = scored.set_index("customer_id").reindex(frame["customer_id"].to_numpy())
    if scored["p_purchase"].isna().any():
        raise InputError(f"Spark returned no score for {int(scored['p_purchase'].isna().sum())} of {len(frame):,} rows")
    return scored[["p_purchase", "p_lapse", "expected_premium"]].set_index(frame.index)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    sp = params.features.engine.spark
    source = args.features or paths.FEATURES.resolve().as_posix()
    t0 = time.perf_counter()
    own = not spark_engine.active()
    spark = spark_engine.session(sp, "contact-priority-score")
    try:
        feats = spark.read.parquet(source)
        if not args.all:
            feats = feats.where(feats["snapshot_date"] == params.book.as_of)
        scored = score_frame(feats, Path(args.models), Path(args.calibrators))
        scored.write.mode("overwrite").partitionBy("snapshot_date").parquet(args.output)
        n = spark.read.parquet(args.output).count()
    finally:
        if own:
            spark.stop()
    if not n:
        raise InputError(f"{source}: no rows at the scoring snapshot {params.book.as_of} "
                         "(--all scores every snapshot)")
    log.info("wrote %s score rows to %s in %.1fs", f"{n:,}", args.output, time.perf_counter() - t0)


def cli(argv: list[str] | None = None) -> int:
    p = base_parser("spark_score", __doc__)
    p.add_argument("--features", default="", help="feature table (folder or URI Spark reads; default data/features)")
    p.add_argument("--output", required=True, help="folder or URI for the score partitions")
    p.add_argument("--models", default=paths.MODELS.as_posix(), help="trained models (default data/models)")
    p.add_argument("--calibrators", default=paths.CALIBRATORS.as_posix(), help="calibrators (default data/calibrators)")
    p.add_argument("--all", action="store_true", help="score every snapshot, not only book.as_of")
    return run_stage("spark_score", main, p, argv)


if __name__ == "__main__":
    sys.exit(cli())
