"""The features stage's snapshot cache: a monthly re-run computes only the snapshots whose inputs changed.

Each snapshot's Parquet parts are kept in ``data/cache/features/<key>.<sample>/``, where ``key`` is the
snapshot's fingerprint (``features.snapshots.fingerprint``: its SQL, date, engine version and what it saw of
every validated table) and ``sample`` the share of customers its training rows cover (``all`` at the
scoring snapshot). A snapshot whose key is cached is read back; one cached with a larger sample is read
through the current, smaller sample's predicate (a growing book lowers the share: the sample is a
threshold on a hash of the customer id, so the smaller sample is a subset and its rows are unchanged);
last month's scoring snapshot, all customers, serves this month's sampled training snapshot of that date.

The scoring snapshot (5M rows at 5M customers) is not written to parts at all: the stage writes it straight into
the feature table, and its entry is a hard link to that table plus ``snapshot_date``, the date whose rows are the
snapshot's (``adopt``; a copy of the rows where the file system has no hard links).

The entries are keyed by the validate stage's fingerprints of the tables (``pipelines.interim``).

The cache is not a DVC output: what the stage writes is the same with or without it
(``tests/unit/pipelines/test_feature_cache.py``), so it only saves time. A run keeps the entries it used and
removes the rest, so the folder holds one run's snapshots. Writes go to a temporary folder renamed into
place: a killed run leaves no half entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from features.snapshots.dialect import DUCKDB, SAMPLE_SCALE
from features.snapshots.fingerprint import Prefix, snapshot_key

log = logging.getLogger(__name__)
ALL = "all"
DATE_FILE = "snapshot_date"  # in an adopted entry: the date whose rows of its table are the snapshot's


def rows_of(date: dt.date) -> str:
    """The rows of one snapshot in the feature table."""
    return f"snapshot_date = DATE '{date.isoformat()}'"


@dataclass(frozen=True)
class Entry:
    """A snapshot's rows: the part files in ``folder``, read through ``sample`` (this run's sample predicate when
    the entry holds a larger sample; "" = every row).

    An entry may also hold a whole feature table, hard-linked (``adopt``): its ``snapshot_date`` file then names
    the snapshot's rows, and every read selects them."""

    folder: Path
    sample: str = ""

    def files(self) -> list[str]:
        """The part files in their order (customer-key ranges: ``000.parquet``, ``001.parquet``, ...)."""
        return [p.as_posix() for p in sorted(self.folder.glob("*.parquet"))]

    @property
    def where(self) -> str:
        dated = self.folder / DATE_FILE
        own = rows_of(dt.date.fromisoformat(dated.read_text(encoding="utf-8").strip())) if dated.is_file() else ""
        return " AND ".join(w for w in (own, self.sample) if w)

    def select(self) -> str:
        sql = f"SELECT * FROM read_parquet({files_sql(self.files())})"
        return f"{sql} WHERE {self.where}" if self.where else sql

    def stats(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        """Rows and label rates of the snapshot (the stage's report), computed once and kept in ``stats.json``."""
        path = self.folder / "stats.json"
        if path.is_file() and not self.sample:
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        stats = snapshot_stats(con, self.select())
        if not self.sample:
            path.write_text(json.dumps(stats), encoding="utf-8")
        return stats


def snapshot_stats(con: duckdb.DuckDBPyConnection, select: str) -> dict[str, Any]:
    """Rows and label rates of the snapshot whose rows ``select`` reads."""
    n, purchase, lapse, defined = con.execute("SELECT COUNT(*), AVG(purchase_h), AVG(lapse_h), COUNT(lapse_h) "
                                              f"FROM ({select})").fetchall()[0]
    return {"rows": n, "purchase_rate": purchase, "lapse_rate": lapse, "lapse_defined": defined}


def files_sql(files: list[str]) -> str:
    return "[" + ", ".join(f"'{f}'" for f in files) + "]"


Select = tuple[str, Mapping[str, Any] | None]  # a SQL select and the parameters it binds


def concatenation(pieces: Sequence[Entry | Select]) -> list[Select]:
    """The table's selects in order (each read with insertion order kept): an entry's rows in its files' order, a
    select (a snapshot's partition written straight into the table) in its own. Neighbouring unfiltered entries
    are read as one file list."""
    selects: list[Select] = []
    run: list[str] = []
    for piece in [*pieces, None]:
        if isinstance(piece, Entry) and not piece.where:
            run += piece.files()
            continue
        if run:
            selects.append((f"SELECT * FROM read_parquet({files_sql(run)})", None))
            run = []
        if isinstance(piece, Entry):
            selects.append((piece.select(), None))
        elif piece is not None:
            selects.append(piece)
    return selects


def _sample_name(fraction: float | None) -> str:
    return ALL if fraction is None else f"t{int(round(fraction * SAMPLE_SCALE)):07d}"


def _covers(cached: str, wanted: str) -> bool:
    """A cached sample holds every row of the wanted one: ``all`` (last month's scoring snapshot) holds any
    sample, and only ``all`` serves ``all``. A customer's row does not depend on who else is sampled."""
    if ALL in (cached, wanted):
        return cached == ALL
    return int(cached[1:]) >= int(wanted[1:])


class SnapshotCache:
    """Entries under ``root``; ``prefixes`` are the running day sums of the validated tables this run reads
    (``pipelines.interim``)."""

    def __init__(self, root: Path, prefixes: Mapping[str, Prefix]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # a killed run's half-written entry
            shutil.rmtree(stale, ignore_errors=True)
        self.prefixes = dict(prefixes)
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
                sample = "" if have == wanted or fraction is None else DUCKDB.sample_predicate(fraction)
                return Entry(folder, sample)
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

    def adopt(self, key: str, table: Path, date: dt.date, con: duckdb.DuckDBPyConnection) -> Entry:
        """Keep the snapshot of ``date`` (every customer: the scoring snapshot) from the written ``table`` without
        writing its rows again: a hard link to the table (Parquet files are never changed in place: the stage
        renames a new one over it). Where the file system has no hard links, the rows are copied."""
        scratch = self.scratch(key)
        try:
            os.link(table, scratch / "000.parquet")
            (scratch / DATE_FILE).write_text(date.isoformat(), encoding="utf-8")
        except OSError as e:
            log.info("no hard link into the snapshot cache (%s): copying the snapshot's rows", e)
            con.execute(f"COPY (SELECT * FROM read_parquet('{table.as_posix()}') WHERE {rows_of(date)}) "
                        f"TO '{(scratch / '000.parquet').as_posix()}' (FORMAT parquet)")
        Entry(scratch).stats(con)
        return self.put(key, None, scratch)

    def prune(self) -> int:
        """Remove every entry this run did not use; the number removed."""
        gone = [p for p in self.root.iterdir() if p.name not in self.used]
        for p in gone:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(gone)
