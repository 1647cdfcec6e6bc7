"""Wiring for a table validated in row chunks (``features.intake.chunked``): spill files, DuckDB, the sorted write.

A 100M-row contact history does not fit in memory as pandas columns (about 0.6 GiB per million rows while its
checks run). Each chunk's row checks run in pandas; what is left (the pending rows) is spilled to Parquet in a
scratch folder, one folder per month of the contract's order (``spill_groups``); DuckDB finds the duplicates
over all of it, out of core within ``validate.memory_limit``, and writes the accepted rows in the contract's
order a month at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.intake.chunked import (
    FLAG,
    PASSED,
    RAW,
    ROW,
    CheckedChunk,
    candidates_sql,
    check_chunk,
    duplicates_sql,
    flag_columns,
    order_sql,
    rejected_rows,
    settle,
    spill_groups,
)
from features.intake.contract import TableSpec
from features.intake.keys import Ids
from features.intake.validation import count_rejects

log = logging.getLogger("pipelines.validate")
BATCH_ROWS = 1 << 20  # rows per row group of the written files (pandas' default)
# Scratch files, scanned by DuckDB and deleted, so written for speed: no column statistics (its scans read every
# row group; they were a third of the write), no dictionaries (most of a chunk's columns are ids; LZ4 takes what
# they would). A 2M-row chunk of contacts at 5M customers, written by month: 1.3-1.5 s and 101 MB, against 1.9-2.3 s
# with dictionaries and Snappy (one file, as before: 1.1-1.5 s and 77 MB).
SPILL_OPTIONS: dict[str, object] = {"write_statistics": False, "use_dictionary": False, "compression": "lz4"}


@dataclass
class ChunkedResult:
    """What ``validate`` reports and writes for a chunked table; its rows stay on disk in ``folder``."""

    table: str
    key: str
    folder: Path
    n_input: int = 0
    n_accepted: int = 0
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @property
    def accepted_file(self) -> Path:
        return self.folder / "accepted.parquet"

    @property
    def quarantine_file(self) -> Path:
        return self.folder / "quarantine.parquet"

    @property
    def n_rejected(self) -> int:
        return sum(self.rejects.values())

    def sample_keys(self, rule: str, column: str, n: int = 5) -> list[str]:
        return self.samples.get((rule, column), [])[:n]

    def accepted_keys(self, column: str) -> pd.Series:
        """One column of the accepted rows (the keys a child table's references are checked against)."""
        return pq.read_table(self.accepted_file, columns=[column]).column(column).to_pandas()

    def _count(self, q: pd.DataFrame) -> None:
        for k, n in count_rejects(q).items():
            self.rejects[k] = self.rejects.get(k, 0) + n
        for (rule, col), grp in q.groupby(["reject_rule", "reject_column"], sort=False):
            seen = self.samples.setdefault((str(rule), str(col)), [])
            seen.extend(str(v) for v in grp[self.key].head(5 - len(seen)).tolist())


def validate_in_chunks(chunks: Iterable[pd.DataFrame], spec: TableSpec, as_of: dt.date,
                       parents: Mapping[str, Ids], source: str, customers: Ids | None, folder: Path,
                       memory_limit: str) -> ChunkedResult:
    """Validate a table chunk by chunk into ``folder`` (accepted rows in contract order, quarantine by row)."""
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("pending", "quarantine"):
        (folder / sub).mkdir(parents=True)
    res = ChunkedResult(spec.name, spec.key, folder)
    zones: dict[str, str] = {}
    templates: dict[str, pd.DataFrame] = {}  # an empty frame of the pending rows' columns and dtypes
    groups: set[int] = set()  # the spill_groups written
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="spill") as spiller:
        spilled: Future[list[int]] | None = None
        for i, raw in enumerate(chunks):
            part = check_chunk(raw, spec, as_of, parents, res.n_input, source, zones, customers)
            res.n_input += len(raw)
            templates.setdefault("pending", part.rows.drop(columns=[PASSED]).iloc[:0])
            res._count(part.quarantine)
            if spilled is not None:  # one chunk written while the next is checked: at most one extra in memory
                groups.update(spilled.result())
            spilled = spiller.submit(_spill, part, spec, folder, i)
            del part, raw
            log.info("%s: chunk %d checked, %s rows so far (%.0f s)", spec.name, i + 1, f"{res.n_input:,}",
                     time.perf_counter() - t0)
        if spilled is not None:
            groups.update(spilled.result())
    con = duckdb.connect()
    # the spilled rows are scanned six times (duplicates, candidates, the quarantine, the sorted write) over a file
    # per chunk and month: read each file's footer once
    con.execute(f"SET memory_limit = '{memory_limit}'; SET temp_directory = '{folder / 'spill'}'; "
                "SET parquet_metadata_cache = true")
    template = templates["pending"]
    con.execute(f"CREATE VIEW pending AS SELECT * FROM {_group_files(folder, '*')}")
    duplicates = con.execute(duplicates_sql(spec, "pending")).df()
    con.register("duplicates", duplicates)
    candidates = con.execute(candidates_sql("pending", "duplicates", flag_columns(list(template.columns)))).df()
    rejected = settle(candidates, duplicates)
    con.register("rejected", rejected[[ROW]])
    raw_cols = [ROW, *(c for c in template.columns if c.startswith(RAW))]
    q = rejected_rows(_fetch(con, f"SELECT {_cols(raw_cols)} FROM pending SEMI JOIN rejected USING ({ROW}) "
                                  f"ORDER BY {ROW}", template[raw_cols]), rejected, spec)
    q.to_parquet(folder / "quarantine/b.parquet", index=False)
    res._count(q)
    log.info("%s: %s duplicate rows found over all chunks, %s rows rejected after the row rules (%.0f s)",
             spec.name, f"{len(duplicates):,}", f"{len(q):,}", time.perf_counter() - t0)
    accepted = [c for c in template.columns if c != ROW and not c.startswith((RAW, FLAG))]
    res.n_accepted = _write(con, [f"SELECT {_cols(accepted)} FROM {_group_files(folder, str(g))} "
                                  f"ANTI JOIN rejected USING ({ROW}) ORDER BY {order_sql(spec, within_group=True)}"
                                  for g in sorted(groups)], template[accepted], res.accepted_file)
    _write(con, [f"SELECT * FROM read_parquet('{folder / 'quarantine'}/*.parquet') ORDER BY source_row"],
           q.iloc[:0], res.quarantine_file)
    con.close()
    for sub in ("pending", "quarantine", "spill"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    log.info("%s: %s rows validated in chunks (%.0f s)", spec.name, f"{res.n_input:,}", time.perf_counter() - t0)
    return res


def _spill(part: CheckedChunk, spec: TableSpec, folder: Path, i: int) -> list[int]:
    """Write chunk ``i``'s pending rows (without the mark), a file per ``spill_groups`` group, and its quarantine,
    for DuckDB to scan; returns the groups. In a thread beside the next chunk's checks: Arrow's Parquet writer
    holds no lock Python needs (a third of a chunk's time at 1M)."""
    rows = pa.Table.from_pandas(part.rows, preserve_index=False)
    written = []
    for group, at in spill_groups(part.rows, spec):
        (folder / f"pending/{group}").mkdir(exist_ok=True)
        pq.write_table(rows.take(at).drop_columns([PASSED]), folder / f"pending/{group}/{i:05d}.parquet",
                       **SPILL_OPTIONS)
        written.append(group)
    part.quarantine.to_parquet(folder / f"quarantine/a{i:05d}.parquet", index=False)
    del rows
    pa.default_memory_pool().release_unused()  # Arrow keeps freed buffers; return them before the next chunk
    return written


def _group_files(folder: Path, group: str) -> str:
    """The spilled pending rows of one group (``*``: of them all), as a DuckDB relation."""
    return f"read_parquet('{folder / 'pending'}/{group}/*.parquet')"


def _cols(names: list[str]) -> str:
    return ", ".join('"' + n.replace('"', '""') + '"' for n in names)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, template: pd.DataFrame) -> pd.DataFrame:
    """A query's (small) result as pandas, with the dtypes of ``template`` (DuckDB's own conversion would turn a
    nullable integer column into floats)."""
    schema = pa.Schema.from_pandas(template, preserve_index=False)
    return con.sql(sql).to_arrow_table().cast(schema).to_pandas()


def _write(con: duckdb.DuckDBPyConnection, queries: list[str], template: pd.DataFrame, dest: Path) -> int:
    """The queries' results, one after the other, streamed into one Parquet file whose schema (pandas metadata
    included) is ``template``'s, so it reads back exactly as the file pandas would have written. Returns the rows
    written."""
    schema = pa.Schema.from_pandas(template, preserve_index=False)
    n = 0
    with pq.ParquetWriter(dest, schema) as writer:
        for sql in queries:
            with con.sql(sql).to_arrow_reader(batch_size=BATCH_ROWS) as reader:
                for batch in reader:
                    writer.write_table(pa.Table.from_batches([batch]).cast(schema))
                    n += batch.num_rows
    return n
