"""The Spark engine's wiring: a session, the validated tables as views, the snapshot SQL, scoring.

The SQL is ``features.snapshots.query`` in the Spark dialect (``features.snapshots.dialect.SPARK``), run through
the same ``materialise`` as on DuckDB, so the bound checks and the staging order are shared. ANSI mode is on:
an overflow or a bad cast is an error, never a wrong number. Sessions run in UTC, so timestamps mean
what they mean in DuckDB. docs/spark.md says how to point this at a cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from features.snapshots.definitions import KEYS, LABELS, ROW_ORDER, FeatureParams, feature_defs
from features.snapshots.dialect import SPARK
from features.snapshots.plan import Snapshot
from features.snapshots.query import materialise, snapshot_query
from pipelines.errors import InputError, UserError
from pipelines.params import SparkParams

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("pipelines.spark_engine")
TABLES = ("customers", "policies", "claims", "contacts")
DATES = {"customers": ("created_date", "birth_date", "first_policy_date"),
         "policies": ("issue_date", "lapse_date", "surrender_date", "maturity_date"), "claims": ("claim_date",)}
EMPTY_CLAIMS = ("SELECT CAST(NULL AS STRING) AS claim_id, CAST(NULL AS STRING) AS policy_id, "
                "CAST(NULL AS STRING) AS customer_id, CAST(NULL AS INT) AS customer_key, "
                "CAST(NULL AS DATE) AS claim_date, CAST(NULL AS DOUBLE) AS amount, "
                "CAST(NULL AS STRING) AS status WHERE FALSE")


def session(sp: SparkParams, app: str = "contact-priority") -> SparkSession:
    """A Spark session for the snapshot SQL; a clear message when PySpark or Java is missing."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise UserError("features.engine.kind is spark but PySpark is not installed: install the project's "
                        "dev dependencies (make venv) or `pip install pyspark`") from e
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise UserError("features.engine.kind is spark but no Java runtime was found (java on PATH or JAVA_HOME): "
                        "install one, e.g. `apt-get install openjdk-17-jre-headless`")
    builder = (SparkSession.builder.appName(app).master(sp.master)
               .config("spark.sql.ansi.enabled", "true")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", str(sp.shuffle_partitions))
               .config("spark.driver.memory", sp.driver_memory)
               .config("spark.executor.memory", sp.executor_memory)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.sources.partitionOverwriteMode", "static"))
    if sp.master.startswith("local"):  # Python workers run this interpreter (a cluster ships its own: docs/spark.md)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in sp.conf.items():
        builder = builder.config(key, value)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown chatter, not ours
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def active() -> bool:
    """Whether this process already has a Spark session (whoever opened it closes it)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return False
    return SparkSession.getActiveSession() is not None


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.rows]


class SparkConnection:
    """What ``features.snapshots.query.materialise`` needs of a connection: ``execute(sql).fetchall()``."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def execute(self, sql: str, args: dict[str, Any] | None = None) -> _Rows:
        return _Rows(self.spark.sql(sql, args=args).collect())


def _exists(spark: SparkSession, uri: str) -> bool:
    """Whether Spark can see ``uri`` (any file system it is configured for)."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(uri)  # type: ignore[union-attr]
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))  # type: ignore[attr-defined]


def register_tables(spark: SparkSession, base: str) -> None:
    """Temporary views over the validated tables under ``base``; dates as DATE, like the DuckDB views."""
    for name in TABLES:
        uri = f"{base.rstrip('/')}/{name}.parquet"
        if not _exists(spark, uri):
            if name == "claims":
                log.info("no claims table: claim features are zero")
                spark.sql(f"CREATE OR REPLACE TEMP VIEW claims AS {EMPTY_CLAIMS}")
                continue
            raise InputError(f"{uri} not found: run the validate stage first (dvc repro validate)")
        df = spark.read.parquet(uri)
        if "customer_key" not in df.columns:
            raise InputError(f"{uri} has no customer_key column (validated by an older version): re-run the "
                             "validate stage (dvc repro validate)")
        for col in DATES.get(name, ()):
            if col in df.columns:
                df = df.withColumn(col, df[col].cast("date"))
        df.createOrReplaceTempView(name)


def output_columns(fp: FeatureParams) -> list[str]:
    """The feature table's columns, in the DuckDB stage's order."""
    return [*KEYS, *(d.name for d in feature_defs(fp)), *LABELS]


def write_snapshots(spark: SparkSession, fp: FeatureParams, plan: list[Snapshot], horizon_days: int,
                    frac: float | None, output: str) -> Iterator[dict[str, Any]]:
    """Each snapshot's rows appended to ``output`` (Parquet partitioned by ``snapshot_date``); yields its counts."""
    con, staged = SparkConnection(spark), set()  # type: ignore[var-annotated]
    for i, snap in enumerate(plan):
        query = snapshot_query(fp, snap.date, horizon_days, snap.labels_known, None if snap.scoring else frac,
                               dialect=SPARK)
        (final,) = materialise(con, query, 1, staged)
        df = spark.sql(final, args=query.args(final)).persist()
        df.write.mode("overwrite" if i == 0 else "append").partitionBy("snapshot_date").parquet(output)
        n, purchase, lapse, defined = df.selectExpr(
            "COUNT(*)", "AVG(purchase_h)", "AVG(lapse_h)", "COUNT(lapse_h)").collect()[0]
        df.unpersist()
        yield {"snapshot_date": str(snap.date), "scoring": snap.scoring, "labels_known": snap.labels_known,
               "rows": int(n), "purchase_rate": purchase, "lapse_rate": lapse, "lapse_defined": int(defined)}


def check_collectable(output: str) -> None:
    """The stage collects Spark's table into ``data/features`` with DuckDB: the output must be a local path.

    A cluster job that writes to HDFS or an object store runs with ``--no-collect`` (docs/spark.md).
    """
    scheme = output.split("://", 1)[0] if "://" in output else ""
    if scheme not in ("", "file"):
        raise UserError(f"features.engine.spark.output is {output!r}: the features stage reads the table back into "
                        "data/features, so it must be a folder this machine reads (a local or mounted path). To "
                        "leave the table in a cluster store, run `python -m pipelines.features --no-collect` "
                        "(docs/spark.md).")


def collect_sql(output: str, columns: list[str]) -> str:
    """DuckDB SQL reading Spark's partitioned table back in the DuckDB stage's column order, types and row order."""
    cols = ", ".join("CAST(snapshot_date AS DATE) AS snapshot_date" if c == "snapshot_date" else c for c in columns)
    folder = output.removeprefix("file://").rstrip("/")
    return (f"SELECT {cols} FROM read_parquet('{folder}/*/*.parquet', hive_partitioning = true) "
            f"ORDER BY {', '.join(ROW_ORDER)}")
