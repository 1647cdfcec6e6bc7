"""The whole pipeline on one machine at 1M and 5M customers: each stage's wall time, CPU time and peak memory.

A data scientist's question is "how long, and how much memory, for my book, every month?". This runs the real
stages, in ``dvc.yaml``'s order, each as ``python -m pipelines.<stage>`` in a child process of its own (``wait4``
gives the child's CPU time and its peak resident set), on a contract-shaped book with labels that have signal:

* **The book** is the pipeline's own synthetic book (``make run`` writes it to ``data/synthetic/book``), tiled:
  copy ``j`` of every customer, policy, claim and contact gets ``-j`` appended to its ids, so a 1M-customer book
  is 20 copies of the 50k book, with the simulator's signal and dirty rows. Tiling is written table by table
  with pyarrow, so a 5M book never has to fit in memory here.
* **The workspace** gets ``params.yaml`` with ``validate.source.dir`` pointing at the tiled book (a user's own
  tables: ``generate``, ``truth`` and ``truth_check`` skip themselves) and its own MLflow store.
* **The floor**, measured in the same run: a DuckDB scan and group-by-customer of the validated contact history,
  the least any feature computation must do. Later runs compare as ratios to it on a noisy machine.
* **The CRM load**: ``python -m pipelines.export --to`` into SQLite in the workspace (``--db-url`` for
  PostgreSQL).

    .venv/bin/python benchmarks/pipeline_bench.py --sizes 1000000 5000000 --markdown docs/pipeline_bench.md
    .venv/bin/python benchmarks/pipeline_bench.py --sizes 100000            # a quick look (about 5 minutes)

Results go to stdout as a markdown table, and as JSON to ``--json`` (``benchmarks/baseline_pipeline.json`` is
the reference that ``--compare`` reads: each stage's wall time per floor, so a regression shows as a ratio).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.run_source import stage_order  # noqa: E402

log = logging.getLogger("pipeline_bench")
ID_COLUMNS = {"customers": ("customer_id", "referred_by"), "policies": ("policy_id", "customer_id"),
              "claims": ("claim_id", "policy_id", "customer_id"), "contacts": ("contact_id", "customer_id")}
TARGETS = {"end to end": 300.0, "export": 60.0, "peak RSS GiB": 6.0}  # issue 22, for the 5M book
BASELINE = REPO / "benchmarks" / "baseline_pipeline.json"
FLOOR_SQL = ("SELECT count(*) FROM (SELECT customer_key, count(*) AS n, max(contact_ts) AS last "
             "FROM read_parquet('{path}') GROUP BY customer_key)")


def tile_book(base: Path, n: int, out: Path) -> int:
    """Write ``ceil(n / base customers)`` copies of the base book to ``out``; returns the customers written."""
    n_base = pq.ParquetFile(base / "customers.parquet").metadata.num_rows
    copies = max(1, math.ceil(n / n_base))
    stamp = out / ".tiled.json"
    key = {"base": str(base.resolve()), "copies": copies,
           "mtime": max(p.stat().st_mtime for p in base.glob("*.parquet"))}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == key:
        return n_base * copies
    out.mkdir(parents=True, exist_ok=True)
    for table, ids in ID_COLUMNS.items():
        src = base / f"{table}.parquet"
        if not src.is_file():
            continue
        t = pq.read_table(src)
        with pq.ParquetWriter(out / f"{table}.parquet", t.schema) as writer:
            for j in range(copies):
                if j == 0:
                    writer.write_table(t)
                    continue
                cols = {c: pc.binary_join_element_wise(t[c], pa.scalar(f"-{j}", t[c].type), pa.scalar("", t[c].type))
                        for c in ids if c in t.column_names}
                writer.write_table(t.from_arrays([cols.get(c, t[c]) for c in t.column_names], schema=t.schema))
        log.info("tiled %s: %s rows x %d", table, f"{t.num_rows:,}", copies)
    stamp.write_text(json.dumps(key), encoding="utf-8")
    return n_base * copies


def workspace(book: Path, ws: Path, overrides: tuple[str, ...] | list[str] = ()) -> Path:
    """A workspace whose params.yaml reads ``book``; everything else as in the repository's params.yaml, but for
    ``overrides`` (``dotted.key=yaml value``, as ``dvc exp run --set-param`` takes them)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["validate"]["source"]["dir"] = str(book.resolve())
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = params
        for k in parents:
            node = node[k]
        if leaf not in node:
            raise SystemExit(f"--set {item}: params.yaml has no key {key}")
        node[leaf] = yaml.safe_load(value)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return ws


def measure(cmd: list[str], cwd: Path, log_file: Path) -> dict[str, Any]:
    """Run ``cmd`` as a child; its wall time, CPU time (user + system) and peak RSS, and its exit code."""
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd.resolve() / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1",
                        "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with log_file.open("a", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "exit": os.waitstatus_to_exitcode(status)}


def run_size(n: int, base: Path, workdir: Path, db_url: str | None, overrides: list[str]) -> dict[str, Any]:
    """Tile, then every stage, the floor and the CRM load, each measured in its own process."""
    book = workdir / f"book_{n}"
    customers = tile_book(base, n, book)
    ws = workspace(book, workdir / f"ws_{n}", overrides)
    log_file = ws / "stages.log"
    rows: list[dict[str, Any]] = []
    failed = None
    for stage in stage_order():
        r = measure([sys.executable, "-m", f"pipelines.{stage}", "--params", "params.yaml"], ws, log_file)
        rows.append({"stage": stage, **r})
        log.info("%s customers: %-12s %8.1f s wall %8.1f s CPU %6.2f GiB (exit %d)", f"{customers:,}", stage,
                 r["wall_s"], r["cpu_s"], r["peak_rss_gib"], r["exit"])
        if r["exit"] != 0:  # the table still shows the stages measured and where the run stopped
            failed = f"stage {stage} failed (exit {r['exit']}; see {log_file})"
            log.error("%s customers: %s", f"{customers:,}", failed)
            break
    contacts = ws / "data/interim/contacts.parquet"
    if not contacts.is_file():  # validate stopped: there is no history to scan
        return {"customers": customers, "contacts": 0, "stages": rows, "floor": None,
                "end_to_end_s": round(sum(r["wall_s"] for r in rows), 1),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in rows), "failed": failed}
    floor = measure([sys.executable, "-c", "import duckdb,sys; duckdb.connect().execute(sys.argv[1]).fetchall()",
                     FLOOR_SQL.format(path=contacts.as_posix())], ws, log_file)
    if floor["exit"] != 0:  # a failed step is not a measurement
        raise SystemExit(f"floor failed at {customers:,} customers (exit {floor['exit']}); see {log_file}")
    if failed is None:
        load = measure([sys.executable, "-m", "pipelines.export", "--params", "params.yaml", "--to",
                        db_url or f"sqlite:///{(ws / 'crm.db').resolve()}"], ws, log_file)
        rows.append({"stage": "crm load" + (" (PostgreSQL)" if db_url and db_url.startswith("postgres") else
                                            " (SQLite)"), **load})
        if load["exit"] != 0:
            failed = f"crm load failed (exit {load['exit']}; see {log_file})"
    events = pq.ParquetFile(contacts).metadata.num_rows
    return {"customers": customers, "contacts": events, "stages": rows, "floor": floor,
            "end_to_end_s": round(sum(r["wall_s"] for r in rows), 1),
            "peak_rss_gib": max(r["peak_rss_gib"] for r in rows), "failed": failed}


def regressions(result: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    """Stages whose wall time per floor, or peak memory, grew past ``tolerance`` times the baseline's at the same
    book size. Ratios to the floor measured in the same run cancel most of a shared machine's noise."""
    same = [b for b in baseline.get("results", []) if b["customers"] == result["customers"] and b["floor"]]
    if not same or not result["floor"]:
        return []
    base, floor, base_floor = same[0], result["floor"]["wall_s"] or 1e-9, same[0]["floor"]["wall_s"] or 1e-9
    before = {r["stage"]: r for r in base["stages"]}
    out = []
    for r in result["stages"]:
        b = before.get(r["stage"])
        if b is None or b["wall_s"] < 1.0:  # a stage that skips itself is all start-up noise
            continue
        ratio, base_ratio = r["wall_s"] / floor, b["wall_s"] / base_floor
        if ratio > tolerance * base_ratio:
            out.append(f"{r['stage']}: {ratio:.1f} x floor, baseline {base_ratio:.1f}")
        if r["peak_rss_gib"] > tolerance * b["peak_rss_gib"]:
            out.append(f"{r['stage']}: peak RSS {r['peak_rss_gib']:.2f} GiB, baseline {b['peak_rss_gib']:.2f}")
    return out


def _floor_ratios(baseline: dict[str, Any], customers: int) -> dict[str, float]:
    """Each stage's wall time per floor in the baseline run of the same size (empty when there is none)."""
    for size in baseline.get("results", []):
        if size["customers"] == customers and size["floor"]:
            floor = size["floor"]["wall_s"] or 1e-9
            return {r["stage"]: r["wall_s"] / floor for r in size["stages"]}
    return {}


def markdown(results: list[dict[str, Any]], baseline: dict[str, Any] | None) -> list[str]:
    lines = ["| customers | stage | wall s | CPU s | peak RSS GiB | wall / floor |"
             + (" baseline wall / floor |" if baseline else ""), "|---|---|---|---|---|---|"
             + ("---|" if baseline else "")]
    for res in results:
        floor = (res["floor"] or {}).get("wall_s") or 0.0

        def per_floor(seconds: float, floor: float = floor) -> str:
            return f"{seconds / floor:.1f}" if floor else "-"
        base = _floor_ratios(baseline, res["customers"]) if baseline else {}
        for r in res["stages"]:
            lines.append(f"| {res['customers']:,} | {r['stage']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['peak_rss_gib']:.2f} | {per_floor(r['wall_s'])} |"
                         + (f" {base[r['stage']]:.1f} |" if r["stage"] in base else (" - |" if baseline else "")))
        if res["floor"]:
            lines.append(f"| {res['customers']:,} | **floor** (scan + group by customer of {res['contacts']:,} "
                         f"contacts) | {res['floor']['wall_s']:.1f} | {res['floor']['cpu_s']:.1f} | "
                         f"{res['floor']['peak_rss_gib']:.2f} | 1.0 |" + (" 1.0 |" if baseline else ""))
        if res.get("failed"):
            lines.append(f"| {res['customers']:,} | **stopped**: {res['failed']} | | | | |"
                         + (" |" if baseline else ""))
        lines.append(f"| {res['customers']:,} | **end to end**{' (incomplete)' if res.get('failed') else ''} | "
                     f"{res['end_to_end_s']:.1f} | "
                     f"{sum(r['cpu_s'] for r in res['stages']):.1f} | {res['peak_rss_gib']:.2f} | "
                     f"{per_floor(res['end_to_end_s'])} |" + (" |" if baseline else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--base", type=Path, default=REPO / "data/synthetic/book",
                    help="the book to tile (default: the synthetic book `make run` writes)")
    ap.add_argument("--workdir", type=Path, default=REPO / "data/benchmarks/pipeline")
    ap.add_argument("--db-url", default=None, help="CRM database for the load step (default: SQLite in the workspace)")
    ap.add_argument("--fail-over", type=float, default=None, metavar="FACTOR",
                    help="with --compare: exit 1 when a stage's wall/floor ratio or peak RSS exceeds FACTOR x the "
                         "baseline's at the same size (e.g. 1.5)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter for the run, e.g. train.min_positives.holdout=5 (repeatable)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements as JSON")
    ap.add_argument("--compare", type=Path, nargs="?", const=BASELINE, default=None,
                    help=f"add each stage's wall/floor ratio from a baseline JSON (default {BASELINE.name})")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not (a.base / "customers.parquet").is_file():
        log.error("%s has no customers.parquet: run `make run` first (it writes the synthetic book)", a.base)
        return 2
    results = []
    for n in a.sizes:  # each size's measurements are kept as soon as they exist
        results.append(run_size(n, a.base, a.workdir, a.db_url, a.overrides))
        if a.json:
            a.json.write_text(json.dumps({"results": results}, indent=1) + "\n", encoding="utf-8")
    baseline = json.loads(a.compare.read_text(encoding="utf-8")) if a.compare else None
    lines = markdown(results, baseline)
    sys.stdout.write("\n".join(lines) + "\n")
    if a.markdown:
        a.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if any(res.get("failed") for res in results):
        return 1
    if baseline and a.fail_over:
        found = [f"{res['customers']:,} customers: {r}" for res in results
                 for r in regressions(res, baseline, a.fail_over)]
        for line in found:
            log.error("compute regression: %s", line)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
