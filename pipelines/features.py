"""Point-in-time features and labels for every snapshot (DVC stage ``features``).

Reads the validated tables in ``data/interim/``, runs each snapshot's staged script (aggregates
materialised one by one in a scratch DuckDB database, the final join in customer partitions, so
memory stays bounded by ``features.engine.memory_limit``), and writes
``data/features/features.parquet`` (one row per customer and snapshot), the feature dictionary
``data/features/dictionary.json`` and ``data/reports/features.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from features.intake.capabilities import LABELS
from features.snapshots.definitions import dictionary
from features.snapshots.fingerprint import Prefix
from features.snapshots.plan import Snapshot, sample_fraction, snapshot_plan
from features.snapshots.query import FeatureBoundError, SnapshotQuery, materialise, snapshot_query
from pipelines import headline, interim, paths, spark_engine
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.errors import InputError, UserError, require
from pipelines.feature_cache import Entry, Select, SnapshotCache, concatenation, rows_of, snapshot_stats
from pipelines.io import staged_outputs
from pipelines.params import EngineParams, Params, load_params

log = logging.getLogger("pipelines.features")
progress = progress_logger("features")
INTERIM, OUT, TABULAR, TABULAR_DICTIONARY = paths.INTERIM, paths.FEATURE_DIR, paths.TABULAR, paths.TABULAR_DICTIONARY
FEATURE_CACHE, FINGERPRINTS = paths.FEATURE_CACHE, paths.FINGERPRINTS
ROW_GROUP_ROWS = 122_880  # DuckDB's row group: readers prune by the snapshot date's statistics


def connect(engine: EngineParams, spill_dir: str) -> duckdb.DuckDBPyConnection:
    """A scratch database with a spill directory: the intermediate (temporary) tables leave memory for the
    next aggregate when the memory limit needs it."""
    con = duckdb.connect(str(Path(spill_dir) / "scratch.duckdb"))
    con.execute(f"SET threads = {engine.threads}")
    con.execute(f"SET memory_limit = '{engine.memory_limit}'")
    con.execute(f"SET temp_directory = '{spill_dir}'")
    con.execute("SET preserve_insertion_order = false")
    return con


def tabular_features(params: Params) -> None:
    """A tabular source's columns already are its features: publish the validated table and its dictionary
    in the feature table's place (one row per case; ``role`` carries the source's split)."""
    require((TABULAR, TABULAR_DICTIONARY), "run the validate stage first (dvc repro validate)")
    df = pd.read_parquet(TABULAR)
    dic = json.loads(TABULAR_DICTIONARY.read_text(encoding="utf-8"))
    caps = params.capabilities
    log.info("%s: no point-in-time snapshots to build; the source's %d columns are the features",
             caps.describe(), sum(1 for d in dic if d["role"] == "feature"))
    per_role = df.groupby("role", sort=False).agg(rows=(caps.label, "size"), positive_rate=(caps.label, "mean"))
    labels = [LABELS[m] for m in caps.models]  # a file with both flags has both label columns
    rates = df.groupby("role", sort=False)[labels].mean()
    with staged_outputs() as out:
        out.parquet(df, OUT / "features.parquet")
        out.json(dic, OUT / "dictionary.json")
        headline.write(out, "features", {"as_of": str(params.book.as_of), "source": caps.source, "rows": len(df),
                  "n_features": sum(1 for d in dic if d["role"] == "feature"), "n_snapshots": int(
                      df["snapshot_date"].nunique()), "label": caps.label,
                  "roles": {str(r): {"rows": int(v["rows"]), "positive_rate": (
                          None if pd.isna(v["positive_rate"]) else float(v["positive_rate"]))}
                                                                for r, v in per_role.iterrows()},
                  "positive_rates": {lbl: {str(r): None if pd.isna(v) else float(v) for r, v in rates[lbl].items()}
                                     for lbl in labels}})
    log.info("wrote %s (%s rows)", OUT / "features.parquet", f"{len(df):,}")


@dataclass(frozen=True)
class Direct:
    """The plan's last snapshot, computed over every customer (the scoring snapshot): its final selects go straight
    into the feature table, so its rows (5M at 5M customers) are encoded once instead of written to parts and
    read back (docs/benchmarks.md). Nothing is staged after it, so its relations are still there at the write."""

    index: int  # its row in the per-snapshot report
    date: dt.date
    key: str  # its cache key ("" without the cache)


def _duckdb_snapshots(con: duckdb.DuckDBPyConnection, params: Params, plan: list[Snapshot], frac: float | None,
                      n_customers: int, parts: str, cache: SnapshotCache | None) \
        -> tuple[list[dict[str, Any]], list[Entry | Select], Direct | None]:
    """Each snapshot's staged script on DuckDB, its final join in customer partitions, to Parquet parts (the
    last, scoring snapshot: to the table itself, ``Direct``); a snapshot ``cache`` holds (its fingerprint
    unchanged) is read back instead. Returns the per-snapshot report, the table's pieces in order and the
    direct snapshot, whose report row is completed after the write."""
    fp, H = params.features, params.book.horizon_days
    partitions = fp.engine.partitions(n_customers)
    per_snapshot: list[dict[str, Any]] = []
    pieces: list[Entry | Select] = []
    staged: set[str] = set()
    direct = None
    for i, snap in enumerate(plan, 1):
        ts = time.perf_counter()
        sample = None if snap.scoring else frac
        # keyed without the sample, which names the entry instead: a larger sample's rows serve a smaller one
        key = cache.key(snapshot_query(fp, snap.date, H, snap.labels_known).as_sql(), snap.date, snap.labels_known,
                        H) if cache else ""
        entry = cache.get(key, sample) if cache else None
        row: dict[str, Any] = {"snapshot_date": str(snap.date), "scoring": snap.scoring,
                               "labels_known": snap.labels_known}
        per_snapshot.append(row)  # no timings: DVC outputs are a function of code, params and data
        query = snapshot_query(fp, snap.date, H, snap.labels_known, sample)
        if entry is None and sample is None and i == len(plan):
            direct = Direct(i - 1, snap.date, key)
            pieces += [(f"SELECT * FROM ({f}) ORDER BY customer_id", query.args(f))  # key ranges in order: ROW_ORDER
                       for f in _stage(con, query, partitions, staged)]
            progress.info("[%d/%d] snapshot %s: staged in %.1fs; its rows are written with the table", i, len(plan),
                          snap.date, time.perf_counter() - ts)
            continue
        note = " (read back from the snapshot cache)" if entry else ""
        if entry is None:
            folder = cache.scratch(key) if cache else Path(parts) / f"{i:03d}"
            folder.mkdir(exist_ok=True)
            _compute(con, query, partitions, staged, folder)
            Entry(folder).stats(con)  # kept with the entry: reading them back is cheaper than the rows
            entry = cache.put(key, sample, folder) if cache else Entry(folder)
        pieces.append(entry)  # a larger cached sample is read through this run's predicate, in order
        row.update(entry.stats(con))
        _progress(i, len(plan), row, time.perf_counter() - ts, note)
    return per_snapshot, pieces, direct


def _stage(con: duckdb.DuckDBPyConnection, query: SnapshotQuery, partitions: int, staged: set[str]) -> list[str]:
    """The snapshot's relations staged on ``con``; its final selects, one per customer partition."""
    try:
        return materialise(con, query, partitions, staged)
    except FeatureBoundError as e:
        raise InputError(f"{INTERIM / (e.table + '.parquet')}: {e}") from e


def _compute(con: duckdb.DuckDBPyConnection, query: SnapshotQuery, partitions: int, staged: set[str],
             folder: Path) -> None:
    finals = _stage(con, query, partitions, staged)
    for k, final in enumerate(finals):  # key ranges in order, each sorted: the snapshot in ROW_ORDER
        part = folder / f"{k:03d}.parquet"
        con.execute(f"COPY (SELECT * FROM ({final}) ORDER BY customer_id) TO '{part.as_posix()}' (FORMAT parquet)",
                    query.args(final))


def write_table(con: duckdb.DuckDBPyConnection, selects: Sequence[Select], target: Path) -> None:
    """The feature table: every select's rows, one after another, through one Parquet writer. One file from
    several queries, each run on its own (a snapshot's partitions keep their hash tables small; one query
    over all of them ran 1.5 times as long at 5M, docs/benchmarks.md)."""
    con.execute("SET preserve_insertion_order = true")  # the selects' order is the table's (ROW_ORDER)
    writer: pq.ParquetWriter | None = None
    try:
        for sql, args in selects:
            reader = con.sql(sql, params=args).to_arrow_reader(ROW_GROUP_ROWS)
            if writer is None:
                writer = pq.ParquetWriter(target, reader.schema)
            elif reader.schema != writer.schema:
                raise RuntimeError(f"the feature table's pieces differ in their columns: {reader.schema} "
                                   f"against {writer.schema}")
            for batch in reader:
                writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()


def _finish_direct(con: duckdb.DuckDBPyConnection, direct: Direct, table: Path, row: dict[str, Any],
                   cache: SnapshotCache | None, n: int) -> None:
    """The direct snapshot's report row from the written table; kept in the cache as a link to the table."""
    entry = cache.adopt(direct.key, table, direct.date, con) if cache else None
    row.update(entry.stats(con) if entry else snapshot_stats(con, f"SELECT * FROM read_parquet('{table.as_posix()}') "
                                                                   f"WHERE {rows_of(direct.date)}"))
    progress.info("[%d/%d] snapshot %s: %s rows written", direct.index + 1, n, direct.date, f"{row['rows']:,}")


def _progress(i: int, n: int, row: dict[str, Any], seconds: float, note: str = "") -> None:
    progress.info("[%d/%d] snapshot %s: %s rows in %.1fs%s%s", i, n, row["snapshot_date"], f"{row['rows']:,}",
                  seconds, note,
                  "" if not row["labels_known"] else
                  f" (purchase {row['purchase_rate'] or 0:.2%}, lapse {row['lapse_rate'] or 0:.2%})")


def _spark_snapshots(params: Params, scratch: str, collect: bool = True) \
        -> tuple[list[Snapshot], float | None, list[dict[str, Any]], str]:
    """The snapshots on Spark, written as partitioned Parquet where ``features.engine.spark.output`` says
    (a scratch folder by default); (plan, sample fraction, per-snapshot counts, the output)."""
    fp, H, sp = params.features, params.book.horizon_days, params.features.engine.spark
    if collect:
        spark_engine.check_collectable(sp.output)
    own = not spark_engine.active()
    spark = spark_engine.session(sp, "contact-priority-features")
    try:
        spark_engine.register_tables(spark, sp.input or INTERIM.resolve().as_posix())
        n_customers, first = spark.sql("SELECT (SELECT COUNT(*) FROM customers), "
                                       "(SELECT CAST(MIN(contact_ts) AS DATE) FROM contacts)").collect()[0]
        plan = snapshot_plan(params.book.as_of, fp, H, history_start=first)
        frac = sample_fraction(fp, n_customers)
        _log_plan(plan, n_customers, frac, "Spark " + sp.master)
        output = sp.output or (Path(scratch) / "spark-features").as_posix()
        per_snapshot, ts = [], time.perf_counter()
        for i, row in enumerate(spark_engine.write_snapshots(spark, fp, plan, H, frac, output), 1):
            per_snapshot.append(row)
            _progress(i, len(plan), row, time.perf_counter() - ts)
            ts = time.perf_counter()
    finally:
        if own:  # a session the caller opened (a test, a notebook) stays theirs
            spark.stop()
    return plan, frac, per_snapshot, output


def _open_cache(con: duckdb.DuckDBPyConnection, engine: EngineParams) -> SnapshotCache | None:
    """The snapshot cache (``features.engine.cache``), keyed by the validate stage's fingerprints of the tables
    (or, when those do not describe the tables in place, fingerprints taken here)."""
    if not engine.cache:
        return None
    ts = time.perf_counter()
    prefixes, why = interim.prefixes(interim.read_fingerprints(FINGERPRINTS), interim.table_files(INTERIM))
    if prefixes is None:
        prefixes = {t: Prefix.of(rows) for t, rows in interim.day_sums(con).items()}
        log.info("%s: fingerprinted the validated tables here in %.1fs", why, time.perf_counter() - ts)
    else:
        log.info("snapshot cache keyed by the validate stage's fingerprints of the tables (%s)", FINGERPRINTS)
    return SnapshotCache(FEATURE_CACHE, prefixes)


def _log_plan(plan: list[Snapshot], n_customers: int, frac: float | None, engine: str) -> None:
    log.info("%d snapshots from %s to %s over %s customers on %s%s", len(plan), plan[0].date, plan[-1].date,
             f"{n_customers:,}", engine, f" (training snapshots sample {frac:.1%})" if frac else "")


def cluster_job(params: Params) -> None:
    """``--no-collect``: the snapshots on Spark, written to ``features.engine.spark.output`` (any URI Spark
    writes: HDFS, an object store) and left there; nothing under data/ changes (docs/spark.md)."""
    sp = params.features.engine.spark
    if params.features.engine.kind != "spark" or not sp.output:
        raise UserError("--no-collect is for the Spark engine's cluster job: set features.engine.kind: spark and "
                        "features.engine.spark.output to where the feature table should go")
    t0 = time.perf_counter()
    plan, _, per_snapshot, output = _spark_snapshots(params, "", collect=False)
    log.info("wrote %d snapshots (%s rows) to %s in %.1fs; data/features unchanged", len(plan),
             f"{sum(r['rows'] for r in per_snapshot):,}", output, time.perf_counter() - t0)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    if not params.capabilities.snapshots:
        tabular_features(params)
        return
    if args.no_collect:
        cluster_job(params)
        return
    fp, H, as_of = params.features, params.book.horizon_days, params.book.as_of
    t0 = time.perf_counter()
    cache: SnapshotCache | None = None
    direct: Direct | None = None
    with tempfile.TemporaryDirectory(prefix="duckdb-spill-") as spill:
        con = connect(fp.engine, spill)
        with staged_outputs() as out, tempfile.TemporaryDirectory(prefix="features-", dir=spill) as parts:
            if fp.engine.kind == "spark":
                plan, frac, per_snapshot, output = _spark_snapshots(params, parts)
                selects: list[Select] = [(spark_engine.collect_sql(output, spark_engine.output_columns(fp)), None)]
            else:
                interim.register_tables(con, INTERIM)
                n_customers = con.execute("SELECT COUNT(*) FROM customers").fetchall()[0][0]
                first = con.execute("SELECT CAST(MIN(contact_ts) AS DATE) FROM contacts").fetchall()[0][0]
                plan = snapshot_plan(as_of, fp, H, history_start=first)
                frac = sample_fraction(fp, n_customers)
                _log_plan(plan, n_customers, frac, "DuckDB")
                cache = _open_cache(con, fp.engine)
                per_snapshot, pieces, direct = _duckdb_snapshots(con, params, plan, frac, n_customers, parts, cache)
                selects = concatenation(pieces)  # already in ROW_ORDER: no sort of the whole table
            target = out.path(OUT / "features.parquet")
            write_table(con, selects, target)
            if direct:
                _finish_direct(con, direct, target, per_snapshot[direct.index], cache, len(plan))
            if cache:
                log.info("snapshot cache %s: %d of %d snapshots read back, %d computed; %d stale entries removed",
                         cache.root, len(cache.reused), len(plan), len(plan) - len(cache.reused), cache.prune())
            dic = dictionary(fp, H)
            out.json(dic, OUT / "dictionary.json")
            total = sum(r["rows"] for r in per_snapshot)
            headline.write(out, "features", {
                "as_of": str(as_of), "horizon_days": H, "rows": total, "n_features":
                sum(1 for d in dic if d["role"] == "feature"), "n_snapshots": len(plan),
                "train_sample_fraction": frac, "snapshots": per_snapshot})
        con.close()
    log.info("wrote %s (%s rows, %d features) in %.1fs", OUT / "features.parquet", f"{total:,}",
             sum(1 for d in dic if d["role"] == "feature"), time.perf_counter() - t0)


def guarded(args: argparse.Namespace) -> None:
    """``main``; DuckDB running out of its memory limit becomes a message saying which setting to change."""
    try:
        main(args)
    except duckdb.OutOfMemoryException as e:
        engine = load_params(args.params).features.engine
        raise UserError(f"DuckDB ran out of the features stage's memory limit (features.engine.memory_limit: "
                        f"{engine.memory_limit}, threads: {engine.threads}, partition_rows: "
                        f"{engine.partition_rows:,}). "
                        "It spills to disk beyond the limit, but sorts and wide joins need room in memory too: raise "
                        "memory_limit, or lower threads or partition_rows. DuckDB said: "
                        f"{str(e).splitlines()[0]}") from e


def cli(argv: list[str] | None = None) -> int:
    p = base_parser("features", __doc__)
    p.add_argument("--no-collect", action="store_true",
                   help="Spark engine only: leave the partitioned table at features.engine.spark.output (a cluster "
                        "job); do not collect it into data/features")
    return run_stage("features", guarded, p, argv)


if __name__ == "__main__":
    sys.exit(cli())
