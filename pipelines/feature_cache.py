"""The features stage's snapshot cache: a monthly re-run computes only the snapshots whose inputs changed.

Each snapshot's Parquet parts are kept in ``data/cache/features/<key>.<sample>/``, where ``key`` is the
snapshot's fingerprint (``features.snapshots.fingerprint``: its SQL, date, engine version and what it saw of
every validated table) and ``sample`` the share of customers its training rows cover (``all`` at the
scoring snapshot). A snapshot whose key is cached is read back; one cached with a larger sample is read
through the current, smaller sample's predicate (a growing book lowers the share: the sample is a
threshold on a hash of the customer id, so the smaller sample is a subset and its rows are unchanged);
last month's scoring snapshot, all customers, serves this month's sampled training snapshot of that date.

The cache is not a DVC output: what the stage writes is the same with or without it
(``tests/unit/pipelines/test_feature_cache.py``), so it only saves time. A run keeps the entries it used and
removes the rest, so the folder holds one run's snapshots. Writes go to a temporary folder renamed into
place: a killed run leaves no half entry.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from features.snapshots.dialect import DUCKDB, SAMPLE_SCALE
from features.snapshots.fingerprint import TABLES, Prefix, day_sums_sql, snapshot_key

ALL = "all"


@dataclass(frozen=True)
class Entry:
    """A snapshot's rows: the part files in ``folder``, read through ``where`` (SQL, "" = every row)."""

    folder: Path
    where: str = ""

    def files(self) -> list[str]:
        """The part files in their order (customer-key ranges: ``000.parquet``, ``001.parquet``, ...)."""
        return [p.as_posix() for p in sorted(self.folder.glob("*.parquet"))]

    def select(self) -> str:
        sql = f"SELECT * FROM read_parquet({files_sql(self.files())})"
        return f"{sql} WHERE {self.where}" if self.where else sql

    def stats(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        """Rows and label rates of the snapshot (the stage's report), computed once and kept in ``stats.json``."""
        path = self.folder / "stats.json"
        if path.is_file() and not self.where:
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        n, purchase, lapse, defined = con.execute("SELECT COUNT(*), AVG(purchase_h), AVG(lapse_h), COUNT(lapse_h) "
                                                  f"FROM ({self.select()})").fetchall()[0]
        stats = {"rows": n, "purchase_rate": purchase, "lapse_rate": lapse, "lapse_defined": defined}
        if not self.where:
            path.write_text(json.dumps(stats), encoding="utf-8")
        return stats


def files_sql(files: list[str]) -> str:
    return "[" + ", ".join(f"'{f}'" for f in files) + "]"


def concatenation(entries: list[Entry]) -> str:
    """Every entry's rows, entry after entry, each in its files' order (read with insertion order kept)."""
    if any(e.where for e in entries):
        raise ValueError("filter the larger cached samples into parts of their own first")
    return f"SELECT * FROM read_parquet({files_sql([f for e in entries for f in e.files()])})"


def _sample_name(fraction: float | None) -> str:
    return ALL if fraction is None else f"t{int(round(fraction * SAMPLE_SCALE)):07d}"


def _covers(cached: str, wanted: str) -> bool:
    """A cached sample holds every row of the wanted one: ``all`` (last month's scoring snapshot) holds any
    sample, and only ``all`` serves ``all``. A customer's row does not depend on who else is sampled."""
    if ALL in (cached, wanted):
        return cached == ALL
    return int(cached[1:]) >= int(wanted[1:])


class SnapshotCache:
    """Entries under ``root``; ``prefixes`` are the day sums of the validated tables this run reads."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # a killed run's half-written entry
            shutil.rmtree(stale, ignore_errors=True)
        self.prefixes = {t: Prefix.of(con.execute(day_sums_sql(t)).fetchall()) for t in TABLES}
        self.engine = f"duckdb {duckdb.__version__}"
        self.used: set[str] = set()
        self.reused: set[str] = set()

    def key(self, sql: str, date: dt.date, labels_known: bool, horizon_days: int) -> str:
        """``sql`` is the snapshot's without the sample; how a sample is drawn is part of the key all the same."""
        sample = DUCKDB.sample_predicate(0.5)  # the sampling function: a new one invalidates every sampled entry
        return snapshot_key(f"{sql}\n-- sample: {sample}", date, labels_known, horizon_days, self.prefixes,
                            self.engine)

    def get(self, key: str, fraction: float | None) -> Entry | None:
        """The cached rows of ``key`` for this sample, or None."""
        wanted = _sample_name(fraction)
        for folder in sorted(self.root.glob(f"{key}.*")):
            have = folder.name.split(".", 1)[1]
            if folder.is_dir() and _covers(have, wanted):
                self.used.add(folder.name)
                self.reused.add(folder.name)
                # a larger sample than wanted (so ``fraction`` is a number): read through this run's predicate
                where = "" if have == wanted or fraction is None else DUCKDB.sample_predicate(fraction)
                return Entry(folder, where)
        return None

    def scratch(self, key: str) -> Path:
        """An empty folder to write a snapshot's parts into before ``put``."""
        folder = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    def put(self, key: str, fraction: float | None, scratch: Path) -> Entry:
        final = self.root / f"{key}.{_sample_name(fraction)}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(scratch, final)
        self.used.add(final.name)
        return Entry(final)

    def prune(self) -> int:
        """Remove every entry this run did not use; the number removed."""
        gone = [p for p in self.root.iterdir() if p.name not in self.used]
        for p in gone:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(gone)
