"""The validated tables as the snapshot SQL reads them (DuckDB views), and their fingerprints.

Shared wiring: ``validate`` fingerprints the tables it publishes (``fingerprints``, written beside them as
``data/interim/fingerprints.json``), so that a monthly ``features`` run need not scan 100M contacts again to
know which snapshots changed; ``features`` reads them back (``prefixes``) and falls back to fingerprinting the
tables itself when the file is missing, of another format, or was written for other files (each table's
size and the hash of its Parquet footer, which records every row group's offsets, sizes and statistics).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb

from features.snapshots.fingerprint import TABLES, Prefix, day_sums_sql
from pipelines.errors import InputError, require

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the file's layout or the views' casts change
EMPTY_CLAIMS = ("SELECT CAST(NULL AS VARCHAR) AS claim_id, CAST(NULL AS VARCHAR) AS policy_id, "
                "CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS INTEGER) AS customer_key, "
                "CAST(NULL AS DATE) AS claim_date, "
                "CAST(NULL AS DOUBLE) AS amount, CAST(NULL AS VARCHAR) AS status WHERE FALSE")
CASTS = {
    "customers": "* REPLACE (CAST(created_date AS DATE) AS created_date, CAST(birth_date AS DATE) AS birth_date, "
                 "CAST(first_policy_date AS DATE) AS first_policy_date)",
    "policies": "* REPLACE (CAST(issue_date AS DATE) AS issue_date, CAST(lapse_date AS DATE) AS lapse_date, "
                "CAST(surrender_date AS DATE) AS surrender_date, CAST(maturity_date AS DATE) AS maturity_date)",
    "claims": "* REPLACE (CAST(claim_date AS DATE) AS claim_date)",
    "contacts": "*",
}
OPTIONAL = ("claims",)


def table_files(folder: Path) -> dict[str, Path]:
    """The snapshot tables' files in ``folder`` (an optional table that is absent is left out)."""
    return {name: folder / f"{name}.parquet" for name in CASTS
            if name not in OPTIONAL or (folder / f"{name}.parquet").is_file()}


def register_tables(con: duckdb.DuckDBPyConnection, tables: Path | Mapping[str, Path]) -> None:
    """Views over the validated Parquet files (a folder, or each table's file); dates as DATE so the SQL compares
    like with like."""
    files = table_files(tables) if isinstance(tables, Path) else dict(tables)
    for name, cols in CASTS.items():
        if name not in files and name in OPTIONAL:
            log.info("no claims table: claim features are zero")
            con.execute(f"CREATE OR REPLACE VIEW claims AS {EMPTY_CLAIMS}")
            continue
        path = files[name]
        require([path], "run the validate stage first (dvc repro validate)")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM read_parquet('{path.as_posix()}')")
        have = {r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()}
        if "customer_key" not in have:
            raise InputError(f"{path} has no customer_key column (validated by an older version): re-run the "
                             "validate stage (dvc repro validate)")


def file_identity(path: Path) -> dict[str, Any]:
    """A Parquet file's size and the SHA-256 of its footer: any rewrite of its rows changes one of them."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(size - 8)
        length = int.from_bytes(fh.read(4), "little")
        fh.seek(max(0, size - 8 - length))
        footer = fh.read(length)
    return {"bytes": size, "footer_sha256": hashlib.sha256(footer).hexdigest()}


def day_sums(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[dt.date | None, int, int]]]:
    """Per registered table, ``(day, hash sum, rows)``: one scan each (``features.snapshots.fingerprint``), sorted
    (a parallel GROUP BY returns its groups in any order; the file validate writes must be the same every run,
    or DVC would see a new ``data/interim`` each time)."""
    return {t: sorted(((d, int(s), int(n)) for d, s, n in con.execute(day_sums_sql(t)).fetchall()),
                      key=lambda r: (r[0] is None, r[0] or dt.date.min, r[1], r[2])) for t in TABLES}


def fingerprints(con: duckdb.DuckDBPyConnection, files: Mapping[str, Path]) -> dict[str, Any]:
    """The document ``validate`` writes: each table's day sums and the identity of the file they describe."""
    register_tables(con, files)
    sums = day_sums(con)
    return {"format": FORMAT, "tables": {
        t: {"file": file_identity(files[t]) if t in files else None,
            "days": [[None if d is None else d.isoformat(), str(s), n] for d, s, n in sums[t]]} for t in TABLES}}


@contextlib.contextmanager
def bounded(memory_limit: str, threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection within ``memory_limit`` (and ``threads``), spilling to a temporary folder.

    Every stage that queries the validated tables opens it so: DuckDB's own default is 80% of the machine's
    memory, taken beside the stage's pandas frames (the contact history at 5M customers is 85M rows)."""
    with tempfile.TemporaryDirectory(prefix="duckdb-") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'; SET temp_directory = '{spill}'")
            if threads is not None:
                con.execute(f"SET threads = {int(threads)}")
            yield con
        finally:
            con.close()


def take_fingerprints(files: Mapping[str, Path], memory_limit: str = "3GB") -> dict[str, Any]:
    """``fingerprints`` on a connection of their own, spilling to a temporary folder (what validate writes)."""
    with bounded(memory_limit) as con:
        return fingerprints(con, files)


def read_fingerprints(path: Path) -> dict[str, Any] | None:
    """``validate``'s document, or None when there is none or it cannot be read (the stage then takes its own)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def prefixes(doc: Mapping[str, Any] | None, files: Mapping[str, Path]) -> tuple[dict[str, Prefix] | None, str]:
    """The day sums' running totals from ``validate``'s document, or None and why they cannot be used."""
    if doc is None:
        return None, "no fingerprints from the validate stage"
    if doc.get("format") != FORMAT or not isinstance(doc.get("tables"), dict):
        return None, f"fingerprints of another format ({doc.get('format')}, this version reads {FORMAT})"
    out = {}
    for t in TABLES:
        entry = doc["tables"].get(t)
        if not isinstance(entry, dict) or entry.get("file") != (file_identity(files[t]) if t in files else None):
            return None, f"the fingerprints were written for another {t} table than the one in place"
        try:
            out[t] = Prefix.of([(None if d is None else dt.date.fromisoformat(d), int(s), int(n))
                                for d, s, n in entry["days"]])
        except (TypeError, ValueError, KeyError):
            return None, f"the fingerprints of the {t} table cannot be read"
    return out, ""
