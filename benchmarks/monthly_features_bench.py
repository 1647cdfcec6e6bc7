"""The features stage's monthly re-run: with the snapshot cache (only the new month's work) against a full recompute.

    .venv/bin/python benchmarks/monthly_features_bench.py --size 5000000 --repeats 2

The book is the features benchmark's (``features_bench.make_book``: contract-shaped validated tables, 20 contacts
a customer, as of 2026-09-30), built once under ``--workdir``. Last month's export is derived from it: rows dated
after 2026-08-31 absent, lapses and surrenders after it not yet recorded. Beside each month's tables, the
fingerprints the validate stage writes (``pipelines.interim``; their time is reported: work moved out of the
features stage, not saved). In one workspace:

1. the stage runs as of 2026-08-31, which fills the cache (``data/cache/features``);
2. then, alternately, the stage as of 2026-09-30 with last month's cache (copied afresh each time: the monthly
   re-run) and with ``features.engine.cache: false`` (the full recompute), each in its own process: wall time,
   CPU time and peak RSS;
3. the floor from the same run (a scan and group by customer of the contacts, as in ``pipeline_bench``), and a
   check that both runs wrote the same table.

Medians of the repeats and their ratio are printed as a Markdown table (``--markdown`` also writes it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features_bench import AS_OF, emit, make_book  # noqa: E402
from pipeline_bench import FLOOR_SQL, measure, workspace  # noqa: E402

from pipelines import interim  # noqa: E402

log = logging.getLogger("monthly_features_bench")
LAST = dt.date(2026, 8, 31)


def last_months_export(book: Path, out: Path, last: dt.date = LAST) -> None:
    """The tables as a run on ``last`` received them (keys kept: a run only needs them consistent)."""
    out.mkdir(parents=True, exist_ok=True)
    day, nxt = f"DATE '{last}'", f"DATE '{last + dt.timedelta(days=1)}'"
    src = {t: f"read_parquet('{(book / f'{t}.parquet').as_posix()}')" for t in ("customers", "policies", "claims",
                                                                                   "contacts")}
    later = {c: f"CASE WHEN {c} <= {day} THEN {c} END" for c in ("lapse_date", "surrender_date")}
    queries = {
        "customers": f"SELECT * REPLACE (CASE WHEN first_policy_date <= {day} THEN first_policy_date END "
                     f"AS first_policy_date) FROM {src['customers']} WHERE created_date <= {day}",
        "policies": f"""SELECT * REPLACE ({later['lapse_date']} AS lapse_date,
                                          {later['surrender_date']} AS surrender_date,
            CASE WHEN status = 'lapsed' AND lapse_date > {day} OR status = 'surrendered' AND surrender_date > {day}
                   OR status = 'matured' AND maturity_date > {day} THEN 'in_force' ELSE status END AS status)
            FROM {src['policies']} WHERE issue_date <= {day}""",
        "claims": f"SELECT * FROM {src['claims']} WHERE claim_date <= {day}",
        # the book dates some rows before their customer's record; they stay (the snapshots never join them)
        "contacts": f"SELECT * FROM {src['contacts']} WHERE contact_ts < {nxt}",
    }
    con = duckdb.connect()
    con.execute("SET threads = 2")
    for name, sql in queries.items():
        con.execute(f"COPY ({sql}) TO '{(out / f'{name}.parquet').as_posix()}' (FORMAT parquet, ROW_GROUP_SIZE "
                    "1000000)")


def fingerprint(folder: Path) -> float:
    """Write the fingerprints the validate stage writes beside the tables it publishes; its seconds."""
    start = time.perf_counter()
    doc = interim.take_fingerprints(interim.table_files(folder))
    (folder / "fingerprints.json").write_text(json.dumps(doc), encoding="utf-8")
    return time.perf_counter() - start


def _point(ws: Path, interim: Path) -> None:
    link = ws / "data" / "interim"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(interim.resolve(), target_is_directory=True)


def _stage(ws: Path, params: Path, log_file: Path) -> dict[str, Any]:
    r = measure([sys.executable, "-m", "pipelines.features", "--params", str(params)], ws, log_file)
    if r["exit"] != 0:
        raise SystemExit(f"the features stage failed (exit {r['exit']}); see {log_file}")
    return r


def same_table(a: Path, b: Path) -> bool:
    con = duckdb.connect()
    n = con.execute(f"SELECT (SELECT COUNT(*) FROM read_parquet('{a}')), (SELECT COUNT(*) FROM read_parquet('{b}'))"
                    ).fetchall()[0]
    diff = con.execute(f"SELECT COUNT(*) FROM (SELECT * FROM read_parquet('{a}') EXCEPT ALL "
                       f"SELECT * FROM read_parquet('{b}'))").fetchall()[0][0]
    return n[0] == n[1] and diff == 0


def run(size: int, workdir: Path, repeats: int, overrides: list[str]) -> dict[str, Any]:
    book = workdir / f"book_{size}"
    if not (book / "contacts.parquet").is_file():
        log.info("building the %s-customer book in %s", f"{size:,}", book)
        make_book(size, book)
    last = workdir / f"last_month_{size}"
    if not (last / "contacts.parquet").is_file():
        last_months_export(book, last)
    moved = {name: fingerprint(folder) for name, folder in (("last", last), ("this", book))}
    log.info("validate's fingerprints of the tables (work moved out of the features stage): %s",
             ", ".join(f"{k} month {v:.1f} s" for k, v in moved.items()))
    ws = workdir / f"monthly_{size}"
    shutil.rmtree(ws, ignore_errors=True)
    log_file = ws / "stages.log"
    for name, as_of, cache in (("last", LAST, True), ("incremental", AS_OF, True), ("full", AS_OF, False)):
        workspace(book, ws, [f"book.as_of={as_of.isoformat()}", f"features.engine.cache={str(cache).lower()}",
                             *overrides])
        (ws / "params.yaml").rename(ws / f"params_{name}.yaml")
    _point(ws, last)
    first = _stage(ws, ws / "params_last.yaml", log_file)
    log.info("last month, cache empty: %.1f s", first["wall_s"])
    cache, kept = ws / "data" / "cache" / "features", ws / "cache_last_month"
    shutil.copytree(cache, kept)
    _point(ws, book)
    rows: dict[str, list[dict[str, Any]]] = {"incremental": [], "full": []}
    tables = {}
    for i in range(repeats):
        for name in ("incremental", "full"):  # interleaved: the machine's drift hits both alike
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(kept, cache)
            rows[name].append(_stage(ws, ws / f"params_{name}.yaml", log_file))
            log.info("repeat %d %-11s %7.1f s wall %7.1f s CPU %5.2f GiB", i + 1, name, rows[name][-1]["wall_s"],
                     rows[name][-1]["cpu_s"], rows[name][-1]["peak_rss_gib"])
            tables[name] = ws / f"features_{name}.parquet"
            shutil.copyfile(ws / "data/features/features.parquet", tables[name])
    floor = measure([sys.executable, "-c", "import duckdb,sys; duckdb.connect().execute(sys.argv[1]).fetchall()",
                     FLOOR_SQL.format(path=(book / "contacts.parquet").as_posix())], ws, log_file)
    equal = same_table(tables["incremental"], tables["full"])
    if not equal:
        raise SystemExit(f"the incremental and full feature tables differ: {tables}")
    return {"customers": size, "repeats": repeats, "last_month": first, "floor": floor, "equal": equal,
            "validate_fingerprints_s": moved["this"], **rows}


def markdown(r: dict[str, Any]) -> list[str]:
    floor = r["floor"]["wall_s"]
    med = {k: {m: statistics.median(x[m] for x in r[k]) for m in ("wall_s", "cpu_s", "peak_rss_gib")}
           for k in ("incremental", "full")}
    lines = ["| customers | features stage, as of 2026-09-30 | wall s (median) | CPU s | peak RSS GiB | wall / floor |",
             "|---|---|---|---|---|---|"]
    for k, label in (("incremental", "monthly re-run (last month's cache)"), ("full", "full recompute (no cache)")):
        m = med[k]
        runs = ", ".join(f"{x['wall_s']:.1f}" for x in r[k])
        lines.append(f"| {r['customers']:,} | {label}: {runs} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                     f"{m['peak_rss_gib']:.2f} | {m['wall_s'] / floor:.0f} |")
    lines.append(f"| {r['customers']:,} | **floor** (scan + group by customer of the contacts) | {floor:.1f} | "
                 f"{r['floor']['cpu_s']:.1f} | {r['floor']['peak_rss_gib']:.2f} | 1 |")
    lines.append("")
    lines.append(f"Ratio of medians, re-run / full: **{med['incremental']['wall_s'] / med['full']['wall_s']:.2f}**; "
                 f"both tables equal: {r['equal']}. The validate stage's fingerprints of this month's tables, which "
                 f"the re-run reads instead of scanning the tables again: {r['validate_fingerprints_s']:.1f} s.")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cp-features-bench")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params.yaml override, e.g. features.n_train_snapshots=6")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = run(args.size, args.workdir, args.repeats, args.set)
    emit(markdown(result), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
