"""DuckDB against Spark on the same books, in the same run: the scoring snapshot's time and throughput per core.

For each book size it runs, interleaved ``--repeats`` times, one scoring snapshot (every customer, the
whole contact history) with

* ``duckdb``: the features stage's engine, as the stage runs it;
* ``duckdb@REV``: the same SQL as committed at ``--baseline`` (default: before the Spark dialect), to show
  the DuckDB path kept its speed;
* ``spark``: the Spark dialect on a local Spark session (``--master``, default ``local[2]``).

Each measurement runs in its own process (a fresh JVM for Spark). Throughput is contact events per
core-second: the events a snapshot reads divided by (median seconds x cores). docs/spark.md turns the
Spark figure into a cluster estimate.

    .venv/bin/python benchmarks/engines_bench.py --sizes 1000000 5000000 --repeats 3
    .venv/bin/python benchmarks/engines_bench.py --sizes 100000 --repeats 1          # quick look

Books come from ``features_bench.make_book`` (contract-shaped, about 20 contacts per customer) and are
shared with that benchmark's work folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from features_bench import AS_OF, emit, make_book  # noqa: E402

log = logging.getLogger("engines_bench")
BASELINE = "7dabb1b"  # the last commit before the Spark dialect (issue 21)


def _old_snapshots(rev: str) -> ModuleType:
    """The snapshot SQL module as committed at ``rev`` (``features/snapshots.py`` before issue 19's packages),
    importable beside today's package: its imports of modules that have moved since are pointed at their new
    homes."""
    for where in ("features/snapshots/query.py", "features/snapshots.py"):
        shown = subprocess.run(["git", "show", f"{rev}:{where}"], cwd=REPO, capture_output=True, text=True)
        if shown.returncode == 0:
            break
    src = shown.stdout
    for old, new in (("features.contract", "features.intake.contract"),
                     ("features.feature_defs", "features.snapshots.definitions"),
                     ("from features import counters", "from features.snapshots import counters"),
                     ("features.counters", "features.snapshots.counters"),
                     ("features.dialect", "features.snapshots.dialect")):
        src = src.replace(old, new)
    path = Path(tempfile.mkdtemp()) / "snapshots_baseline.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("snapshots_baseline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["snapshots_baseline"] = module
    spec.loader.exec_module(module)
    return module


def _params():  # noqa: ANN202
    from pipelines.params import load_params

    p = load_params(REPO / "params.yaml")
    return p.features, p.book.horizon_days


def measure_duckdb(folder: Path, baseline: str | None) -> dict[str, object]:
    from pipelines.features import connect
    from pipelines.interim import register_tables

    snapshots = _old_snapshots(baseline) if baseline else __import__("features.snapshots.query", fromlist=["x"])
    fp, H = _params()
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(fp.engine, tmp)
        register_tables(con, folder)
        n = con.execute("SELECT COUNT(*) FROM customers").fetchall()[0][0]
        events = con.execute("SELECT COUNT(*) FROM contacts WHERE contact_ts < $as_of",
                             {"as_of": AS_OF}).fetchall()[0][0]
        t = time.perf_counter()
        query = snapshots.snapshot_query(fp, AS_OF, H, labels_known=False)
        for k, final in enumerate(snapshots.materialise(con, query, fp.engine.partitions(n))):
            args = query.args(final) if hasattr(query, "args") else None  # the baseline's SQL bound no parameters
            con.execute(f"COPY ({final}) TO '{tmp}/scoring.{k}.parquet' (FORMAT parquet)", args)
        seconds = time.perf_counter() - t
        rows = con.execute(f"SELECT COUNT(*) FROM read_parquet('{tmp}/scoring.*.parquet')").fetchall()[0][0]
        con.close()
    return {"seconds": seconds, "rows": rows, "events": events}


def measure_spark(folder: Path, master: str, memory: str) -> dict[str, object]:
    from features.snapshots.dialect import SPARK
    from features.snapshots.query import materialise, snapshot_query
    from pipelines import spark_engine

    fp, H = _params()
    sp = fp.engine.spark.model_copy(update={"master": master, "driver_memory": memory})
    spark = spark_engine.session(sp, "engines-bench")
    spark_engine.register_tables(spark, folder.as_posix())
    events = spark.sql("SELECT COUNT(*) FROM contacts WHERE contact_ts < :as_of", args={"as_of": AS_OF}).collect()[0][0]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):  # cold (a fresh JVM compiles the query), then warm (what a long job sees per snapshot)
            t = time.perf_counter()
            query = snapshot_query(fp, AS_OF, H, False, dialect=SPARK)
            (final,) = materialise(spark_engine.SparkConnection(spark), query)
            spark.sql(final, args=query.args(final)).write.mode("overwrite").parquet(f"{tmp}/scoring")
            times.append(time.perf_counter() - t)
        rows = spark.read.parquet(f"{tmp}/scoring").count()
    spark.stop()
    return {"seconds": times[1], "cold_seconds": times[0], "rows": rows, "events": events}


def _child(variant: str, folder: Path, a: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--measure", variant, "--data", str(folder), "--baseline", a.baseline,
           "--master", a.master, "--spark-memory", a.spark_memory]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} measurement failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _cores(master: str) -> int:
    if master.startswith("local[") and master[6:-1].isdigit():
        return int(master[6:-1])
    return os.cpu_count() or 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the DuckDB SQL to compare against")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--spark-memory", default="8g", help="driver memory (the whole local JVM)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cp-features-bench")
    ap.add_argument("--markdown", type=Path, help="also write the results table here")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        res = (measure_spark(a.data, a.master, a.spark_memory) if a.measure == "spark"
               else measure_duckdb(a.data, a.baseline if a.measure == "baseline" else None))
        print(json.dumps(res))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cores, lines = _cores(a.master), []
    lines += [f"| customers | contacts read | engine | median s ({a.repeats} runs) | events per core-second "
              "| vs DuckDB |", "|---|---|---|---|---|---|"]
    for n in a.sizes:
        folder = a.workdir / f"book_{n}"
        if not (folder / "contacts.parquet").is_file():
            log.info("generating %s", folder)
            make_book(n, folder)
        runs: dict[str, list[float]] = {"duckdb": [], "baseline": [], "spark": []}
        cold: list[float] = []
        events = 0
        for r in range(a.repeats):
            for variant in runs:  # interleaved: the machine's noise falls on every engine alike
                res = _child(variant, folder, a)
                runs[variant].append(float(res["seconds"]))  # type: ignore[arg-type]
                if "cold_seconds" in res:
                    cold.append(float(res["cold_seconds"]))  # type: ignore[arg-type]
                events = int(res["events"])  # type: ignore[call-overload]
                log.info("%s customers, run %d, %s: %.1fs (%s rows)", f"{n:,}", r + 1, variant, res["seconds"],
                         f"{res['rows']:,}")
        base = statistics.median(runs["duckdb"])
        for variant, label in (("duckdb", "DuckDB"), ("baseline", f"DuckDB @{a.baseline}"),
                               ("spark", f"Spark {a.master}")):
            med = statistics.median(runs[variant])
            lines.append(f"| {n:,} | {events:,} | {label} | {med:.1f} | {events / (med * cores):,.0f} "
                         f"| {med / base:.2f}x |")
        lines.append(f"| {n:,} | {events:,} | Spark {a.master}, cold JVM | {statistics.median(cold):.1f} "
                     f"| {events / (statistics.median(cold) * cores):,.0f} | {statistics.median(cold) / base:.2f}x |")
    emit(lines, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
