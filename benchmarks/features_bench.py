"""Benchmark of the features stage: time and peak memory for one snapshot at 100k / 1M / 5M customers.

Books are random but contract-shaped (about 20 contacts per customer over two years, in the layout the
validate stage writes: month by month, by customer within a month) and generated straight to Parquet
one month at a time, so the 5M-customer / 100M-contact book never has to fit in memory. Each
measurement runs in a child process, so the peak memory reported is that process's own maximum
resident set size (from ``wait4``).

    .venv/bin/python benchmarks/features_bench.py                       # 100k, 1M, 5M; pandas up to 1M
    .venv/bin/python benchmarks/features_bench.py --sizes 100000 --pandas-max 100000   # quick look
    .venv/bin/python benchmarks/features_bench.py --features '{"windows_days": [30, 365]}'  # other params

Results are printed as a markdown table (and written with ``--markdown FILE``); docs/benchmarks.md
holds the reference run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from features.intake.contract import (  # noqa: E402
    ACQUISITION_SOURCES,
    CHANNELS,
    INCOME_BANDS,
    MARITAL_STATUSES,
    NEEDS_CLASSES,
    OUTCOMES,
    PAYMENT_MODES,
    PRODUCT_LINES,
    PURPOSES,
)

log = logging.getLogger("features_bench")
AS_OF = dt.date(2026, 9, 30)
HISTORY_DAYS = 730
EPOCH = np.datetime64("1970-01-01")


def _ids(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pa.array(idx, pa.int64()).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _pick(rng: np.random.Generator, codes: list[str], n: int, p: list[float] | None = None) -> pa.Array:
    idx = rng.choice(len(codes), n, p=p).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(codes)).cast(pa.string())


def _dates(days_since_epoch: np.ndarray) -> pa.Array:
    return pa.array(days_since_epoch.astype("datetime64[D]").astype("datetime64[us]"))


def make_book(n: int, folder: Path, seed: int = 1, contacts_per_customer: float = 20.0) -> dict[str, int]:
    """Write customers / policies / claims / contacts Parquet files in the validated (interim) shape."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    as_of = (np.datetime64(AS_OF) - EPOCH).astype(int)
    created = as_of - rng.integers(1, 3650, n)
    birth = created - rng.integers(18 * 365, 70 * 365, n)
    referred = np.where(rng.random(n) < 0.1, rng.integers(0, n, n), -1)
    customers = pa.table({
        "customer_id": _ids("C", np.arange(n), 9), "customer_key": pa.array(np.arange(n, dtype=np.int32)),
        "created_date": _dates(created), "birth_date": _dates(birth),
        "gender": _pick(rng, ["F", "M"], n), "province": _pick(rng, ["广东", "江苏", "浙江", "山东", "北京"], n),
        "city": _pick(rng, ["广州", "南京", "杭州", "济南", "北京"], n),
        "occupation_class": pa.array(rng.integers(1, 7, n)),
        "income_band": _pick(rng, list(INCOME_BANDS), n), "marital_status": _pick(rng, list(MARITAL_STATUSES), n),
        "children": pa.array(rng.integers(0, 4, n)), "needs_class": _pick(rng, list(NEEDS_CLASSES), n),
        "acquisition_source": _pick(rng, list(ACQUISITION_SOURCES), n),
        "referred_by": pc.if_else(pa.array(referred >= 0), _ids("C", np.maximum(referred, 0), 9),
                                  pa.scalar(None, pa.string())),
        "referred_by_key": pa.array(np.where(referred >= 0, referred, 0), mask=referred < 0, type=pa.int32()),
        "first_policy_date": _dates(created), "agent_id": _ids("A", rng.integers(0, 5000, n), 5),
        "do_not_call": pa.array(rng.random(n) < 0.03), "do_not_sms": pa.array(rng.random(n) < 0.03),
    })
    pq.write_table(customers, folder / "customers.parquet")

    n_pol = rng.poisson(1.5, n)
    cust = np.repeat(np.arange(n), n_pol)
    m = len(cust)
    issue = created[cust] + (rng.random(m) * (as_of - created[cust])).astype(np.int64)
    u = rng.random(m)
    ended = issue + (rng.random(m) * (as_of - issue)).astype(np.int64)
    lapse = np.where(u < 0.15, ended, -1)
    surr = np.where((u >= 0.15) & (u < 0.2), ended, -1)
    mat = np.where((u >= 0.2) & (u < 0.25), ended, np.where(rng.random(m) < 0.5, as_of + rng.integers(1, 9000, m), -1))
    null_date = pa.scalar(None, pa.timestamp("us"))
    policies = pa.table({
        "policy_id": _ids("P", np.arange(m), 10), "customer_id": _ids("C", cust, 9),
        "customer_key": pa.array(cust.astype(np.int32)),
        "product_line": _pick(rng, list(PRODUCT_LINES), m), "issue_date": _dates(issue),
        "status": pa.array(np.where(lapse >= 0, "lapsed", np.where(surr >= 0, "surrendered",
                                    np.where((mat >= 0) & (mat <= as_of), "matured", "in_force")))),
        "lapse_date": pc.if_else(pa.array(lapse >= 0), _dates(np.maximum(lapse, 0)), null_date),
        "surrender_date": pc.if_else(pa.array(surr >= 0), _dates(np.maximum(surr, 0)), null_date),
        "maturity_date": pc.if_else(pa.array(mat >= 0), _dates(np.maximum(mat, 0)), null_date),
        "annual_premium": pa.array(np.round(rng.lognormal(8.5, 1.0, m), 2)),
        "sum_assured": pa.array(np.round(rng.lognormal(12, 1.0, m), -2)),
        "payment_mode": _pick(rng, list(PAYMENT_MODES), m),
    })
    pq.write_table(policies, folder / "policies.parquet")

    k = n // 10
    pol = rng.integers(0, m, k)
    claims = pa.table({
        "claim_id": _ids("L", np.arange(k), 10), "policy_id": _ids("P", pol, 10),
        "customer_id": _ids("C", cust[pol], 9), "customer_key": pa.array(cust[pol].astype(np.int32)),
        "claim_date": _dates(as_of - rng.integers(1, 1500, k)), "amount": pa.array(np.round(rng.lognormal(8, 1, k), 2)),
        "status": _pick(rng, ["paid", "rejected", "pending"], k, [0.85, 0.1, 0.05]),
    })
    pq.write_table(claims, folder / "claims.parquet")

    total = int(n * contacts_per_customer)
    start = as_of - HISTORY_DAYS
    months = np.unique(np.arange(start, as_of).astype("datetime64[D]").astype("datetime64[M]"))
    writer = None
    lo = 0
    for mo in months:
        # the layout validate writes (features.intake.contract: contacts by month, then customer, then time)
        d0 = max(int((mo.astype("datetime64[D]") - EPOCH).astype(int)), start)
        d1 = min(int(((mo + 1).astype("datetime64[D]") - EPOCH).astype(int)), as_of)
        c = int(round(total * (d1 - start) / HISTORY_DAYS)) - lo
        ts_us = rng.integers(d0 * 86_400_000_000, d1 * 86_400_000_000, c)
        cust = rng.integers(0, n, c)
        order = np.lexsort((ts_us, cust))
        ts, cust = ts_us[order].astype("datetime64[us]"), cust[order]
        hold = rng.random(c) < 0.02
        outcome = _pick(rng, list(OUTCOMES), c, [0.35, 0.35, 0.12, 0.06, 0.04, 0.04, 0.02, 0.02])
        chunk = pa.table({
            "contact_id": _ids("K", np.arange(lo, lo + c), 11), "customer_id": _ids("C", cust, 9),
            "customer_key": pa.array(cust.astype(np.int32)),
            "contact_ts": pa.array(ts), "channel": _pick(rng, list(CHANNELS), c),
            "direction": _pick(rng, ["outbound", "inbound"], c, [0.85, 0.15]),
            "purpose": _pick(rng, list(PURPOSES), c),
            "outcome": pc.if_else(pa.array(hold), pa.scalar(None, pa.string()), outcome),
            "duration_sec": pa.array(rng.exponential(200, c)), "agent_id": _ids("A", rng.integers(0, 5000, c), 5),
            "campaign_id": pa.nulls(c, pa.string()), "holdout": pa.array(hold),
        })
        if writer is None:
            writer = pq.ParquetWriter(folder / "contacts.parquet", chunk.schema)
        writer.write_table(chunk, row_group_size=1_000_000)
        lo += c
    assert writer is not None
    writer.close()
    return {"customers": n, "policies": m, "claims": k, "contacts": total}


# ---------------------------------------------------------------------------------------------
# Measurements (each in its own process)
# ---------------------------------------------------------------------------------------------
def _params(sample_max: int = 500_000):  # noqa: ANN202
    """params.yaml's features section, with ``--features`` overrides (passed to children as CP_BENCH_FEATURES)."""
    from pipelines.params import load_params

    p = load_params(REPO / "params.yaml")
    raw = {**p.features.model_dump(), "train_sample_max_customers": sample_max,
           **json.loads(os.environ.get("CP_BENCH_FEATURES") or "{}")}
    return type(p.features).model_validate(raw), p.book.horizon_days


def _run(con, query, path: str, partitions: int) -> None:  # noqa: ANN001
    """Exactly what the features stage does for one snapshot."""
    from features.snapshots.query import materialise

    for k, final in enumerate(materialise(con, query, partitions)):
        con.execute(f"COPY ({final}) TO '{path}.{k}.parquet' (FORMAT parquet)", query.args(final))


def measure_duckdb(folder: Path, n_train: int) -> dict[str, object]:
    from features.snapshots.plan import sample_fraction, snapshot_plan
    from features.snapshots.query import snapshot_query
    from pipelines.features import connect
    from pipelines.interim import register_tables

    fp, H = _params()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(fp.engine, tmp)
        register_tables(con, folder)
        n = con.execute("SELECT COUNT(*) FROM customers").fetchall()[0][0]
        t = time.perf_counter()
        parts = fp.engine.partitions(n)
        _run(con, snapshot_query(fp, AS_OF, H, labels_known=False), f"{tmp}/scoring", parts)
        out["scoring_seconds"] = round(time.perf_counter() - t, 2)
        out["partitions"] = parts
        out["rows"] = con.execute(f"SELECT COUNT(*) FROM read_parquet('{tmp}/scoring.*.parquet')").fetchall()[0][0]
        if n_train:
            fpt = fp.model_copy(update={"n_train_snapshots": n_train})
            plan = [s for s in snapshot_plan(AS_OF, fpt, H) if not s.scoring]
            frac = sample_fraction(fp, n)
            t = time.perf_counter()
            for i, s in enumerate(plan):
                _run(con, snapshot_query(fp, s.date, H, s.labels_known, frac), f"{tmp}/train_{i}",
                     fpt.engine.partitions(int(n * (frac or 1.0))))
            out["train_snapshots"] = len(plan)
            out["train_sample_fraction"] = frac
            out["train_seconds_per_snapshot"] = round((time.perf_counter() - t) / len(plan), 2)
        con.close()
    return out


def measure_pandas(folder: Path) -> dict[str, object]:
    import pandas as pd

    from features.snapshots.reference import reference_snapshot

    fp, H = _params()
    t = time.perf_counter()
    names = ("customers", "policies", "claims", "contacts")
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in names}
    load = time.perf_counter() - t
    t = time.perf_counter()
    df = reference_snapshot(tables, fp, AS_OF, H, labels_known=False)
    return {"scoring_seconds": round(time.perf_counter() - t, 2), "load_seconds": round(load, 2), "rows": len(df)}


def _child(kind: str, folder: Path, n_train: int) -> tuple[dict[str, object], float]:
    cmd = [sys.executable, __file__, "--measure", kind, "--data", str(folder), "--train-snapshots", str(n_train)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024 / 1024  # GiB


def emit(lines: list[str], markdown: Path | None) -> None:
    """Print the results table, and write it to ``markdown`` when given (the benchmarks share this)."""
    table = "\n".join(lines)
    print(table)
    if markdown:
        markdown.write_text(table + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--pandas-max", type=int, default=1_000_000, help="largest size to run the pandas reference on")
    ap.add_argument("--train-snapshots", type=int, default=3, help="training snapshots to time per size (0 = none)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cp-features-bench")
    ap.add_argument("--markdown", type=Path, help="also write the results table here")
    ap.add_argument("--features", default="", help='overrides of params.yaml\'s features section as JSON, '
                    'e.g. \'{"windows_days": [30, 365]}\'')
    ap.add_argument("--measure", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.features:
        os.environ["CP_BENCH_FEATURES"] = a.features  # children inherit it
        try:
            _params()  # a bad override fails here, not in every child
        except ValueError as e:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
            ap.error(f"--features: {e}")
    if a.measure:
        res = measure_duckdb(a.data, a.train_snapshots) if a.measure == "duckdb" else measure_pandas(a.data)
        print(json.dumps(res))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    rows = []
    for n in a.sizes:
        folder = a.workdir / f"book_{n}"
        if not (folder / "contacts.parquet").is_file():
            t = time.perf_counter()
            sizes = make_book(n, folder)
            log.info("generated %s in %.0fs: %s", folder, time.perf_counter() - t, sizes)
        duck, duck_mem = _child("duckdb", folder, a.train_snapshots)
        log.info("duckdb %s: %s, peak %.2f GiB", f"{n:,}", duck, duck_mem)
        row = {"customers": n, "contacts": int(n * 20), "duckdb_s": duck["scoring_seconds"], "duckdb_gib": duck_mem,
               "train_s": duck.get("train_seconds_per_snapshot"), "train_frac": duck.get("train_sample_fraction"),
               "rows": duck["rows"], "pandas_s": None, "pandas_gib": None}
        if n <= a.pandas_max:
            pand, pand_mem = _child("pandas", folder, 0)
            log.info("pandas %s: %s, peak %.2f GiB", f"{n:,}", pand, pand_mem)
            row.update(pandas_s=pand["scoring_seconds"], pandas_gib=pand_mem)
        rows.append(row)
    lines = ["| customers | contacts | DuckDB one snapshot (s) | DuckDB peak RSS (GiB) "
             "| DuckDB per training snapshot (s, sample) "
             "| pandas reference (s) | pandas peak RSS (GiB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        share = "all" if not r["train_frac"] else format(r["train_frac"], ".0%")
        train = f"{r['train_s']} ({share})" if r["train_s"] else "–"
        pandas_s = f"{r['pandas_s']}" if r["pandas_s"] is not None else "not run"
        pandas_m = f"{r['pandas_gib']:.2f}" if r["pandas_gib"] is not None else "–"
        lines.append(f"| {r['customers']:,} | {r['contacts']:,} | {r['duckdb_s']} | {r['duckdb_gib']:.2f} | {train} "
                     f"| {pandas_s} | {pandas_m} |")
    emit(lines, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
