"""Load a score delivery into a CRM staging table (SQLite, PostgreSQL, anything SQLAlchemy speaks).

One transaction: create the table if missing (primary key ``customer_id, as_of``), replace the rows of
that as_of with the delivery's rows (an upsert by key that also drops customers no longer delivered),
then read the rows back inside the same transaction and compare the row count and a checksum of every
value with the delivery's. Any difference rolls the whole load back.

Everything streams in chunks of ``CHUNK`` rows (PostgreSQL through ``COPY`` both ways, in CSV that Arrow writes
and parses; other databases through batched inserts and a cursor), and the checksum does not depend on row order, so
neither side is sorted or held whole: at 1M customers the load held 8.3 GiB of row dictionaries and rows.
Each chunk is converted column by column in Arrow (``pipelines/crm_rows.py``), not value by value.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from pipelines import crm_rows, score_file
from pipelines.errors import UserError

log = logging.getLogger(__name__)
_TYPES: dict[str, Any] = {"string": sa.Text, "number": sa.Float(precision=53), "integer": sa.BigInteger,
                          "boolean": sa.Boolean, "date": sa.Date}
CHUNK = 50_000


def redact(url: str) -> str:
    """A database URL without its password, for logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def table_for(name: str, schema: str | None) -> sa.Table:
    cols = [sa.Column(c.name, _TYPES[c.type], nullable=c.nullable, primary_key=c.name in ("customer_id", "as_of"))
            for c in score_file.COLUMNS if c.name in score_file.NAMES]  # the book profile only
    return sa.Table(name, sa.MetaData(schema=schema), *cols)


def checksum(rows: Sequence[Sequence[Any]] | pd.DataFrame) -> str:
    """The rows' ``crm_rows.Checksum``: a delivery's frame (its score-file columns) or rows read back from a
    table (tuples in score-file column order)."""
    h = crm_rows.Checksum()
    if isinstance(rows, pd.DataFrame):
        for cols in _column_chunks(rows):
            h.update(cols)
    else:
        h.update(crm_rows.transpose(rows))
    return h.hexdigest()


def _column_chunks(df: pd.DataFrame) -> Iterator[list[Any]]:
    """The delivery's score-file columns, ``CHUNK`` rows at a time, converted once (``crm_rows.columns``)."""
    for start in range(0, len(df), CHUNK):
        yield crm_rows.columns(df.iloc[start:start + CHUNK])


def _insert(conn: sa.Connection, t: sa.Table, df: pd.DataFrame) -> None:
    """Insert the delivery chunk by chunk, each chunk's columns converted once (``pipelines/crm_rows.py``):
    PostgreSQL through ``COPY`` in CSV written by Arrow, SQLite through the driver's ``executemany`` (the values in
    the form SQLAlchemy's SQLite types store), any other database through SQLAlchemy's executemany."""
    raw: Any = conn.connection.driver_connection
    driver: Any = conn.dialect.dbapi  # the driver module: its own errors are not SQLAlchemy's
    target = _target(t)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        try:
            with raw.cursor() as cur, cur.copy(f"COPY {target} ({_NAMES}) FROM STDIN (FORMAT csv)") as copy:
                for cols in _column_chunks(df):
                    copy.write(crm_rows.copy_csv(cols))
        except driver.Error as e:
            raise _Failed(_brief(e)) from e
        return
    sqlite = conn.dialect.name == "sqlite"
    marks = ", ".join("?" for _ in score_file.NAMES)
    for cols in _column_chunks(df):
        rows = crm_rows.python_rows(cols, sqlite=sqlite)
        if sqlite:
            conn.exec_driver_sql(f"INSERT INTO {target} ({_NAMES}) VALUES ({marks})", rows)
        else:
            conn.execute(sa.insert(t), [dict(zip(score_file.NAMES, r, strict=True)) for r in rows])


def _brief(e: BaseException) -> str:
    """An error's type and first line, for a one-line message (a driver's error can have an empty message)."""
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_NAMES = ", ".join(_quoted(c) for c in score_file.NAMES)  # the score-file columns, in order, as SQL


def _target(t: sa.Table) -> str:
    return ".".join(_quoted(p) for p in ((t.schema,) if t.schema else ()) + (t.name,))


def _read_back(conn: sa.Connection, t: sa.Table, as_of: dt.date) -> Iterator[list[pa.Array]]:
    """The loaded rows of ``as_of``, chunk by chunk, as score-file columns. PostgreSQL's through ``COPY ... TO
    STDOUT`` in CSV, parsed by Arrow (its server-side cursor made a Python value of each of 175M values at 5M
    customers, then turned them into columns again: two fifths of the load). SQLite's through its own cursor: its
    dates come back as the ISO text they are stored as and its booleans as 0/1, which the checksum reads as it reads
    dates and booleans (SQLAlchemy's per-value date parsing was a fifth of a load). Any other database's through
    SQLAlchemy's streamed result."""
    raw: Any = conn.connection.driver_connection
    driver: Any = conn.dialect.dbapi
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        query = (f"COPY (SELECT {_NAMES} FROM {_target(t)} WHERE as_of = DATE '{as_of.isoformat()}') "
                 "TO STDOUT (FORMAT csv)")
        try:
            with raw.cursor() as cur:
                # this transaction's text forms: ISO dates, floats as their shortest exact text (whatever the server's
                # defaults), as the checksum reads them
                cur.execute("SET LOCAL DateStyle TO ISO")
                cur.execute("SET LOCAL extra_float_digits TO 1")
                with cur.copy(query) as copy:
                    for batch in crm_rows.csv_reader(_CopyStream(copy)):
                        yield batch.columns
        except driver.Error as e:
            raise _Failed(_brief(e)) from e
        return
    if conn.dialect.name == "sqlite":
        cur = raw.cursor()
        try:
            cur.execute(f"SELECT {_NAMES} FROM {_target(t)} WHERE as_of = ?", (as_of.isoformat(),))
            while rows := cur.fetchmany(CHUNK):
                yield crm_rows.transpose(rows)
        except driver.Error as e:  # the driver's own error, not SQLAlchemy's
            raise _Failed(_brief(e)) from e
        finally:
            cur.close()
        return
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(
        sa.select(*[t.c[c] for c in score_file.NAMES]).where(t.c.as_of == as_of))
    for part in result.partitions():
        yield crm_rows.transpose(part)


class _CopyStream(io.RawIOBase):
    """A ``COPY ... TO STDOUT``'s data (a block per row from libpq) as a file Arrow's CSV reader reads from."""

    def __init__(self, copy: Any) -> None:
        super().__init__()
        self._blocks = iter(copy)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = 0
        while n < len(out):
            if not self._rest:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._rest = memoryview(block).cast("B")
            k = min(len(out) - n, len(self._rest))
            out[n:n + k] = self._rest[:k]
            self._rest, n = self._rest[k:], n + k
        return n


def load(url: str, df: pd.DataFrame, as_of: dt.date, table: str, schema: str | None = None) -> dict[str, Any]:
    """Upsert ``df`` (one delivery) into ``schema.table`` in one verified transaction. The delivery's checksum is
    taken in a thread beside the load, while PostgreSQL's server process parses and indexes the rows (SQLite's
    inserts hold the interpreter's lock: no gain there, docs/benchmarks.md)."""
    try:
        engine = sa.create_engine(url)
    except (SQLAlchemyError, ValueError, ModuleNotFoundError) as e:
        raise UserError(f"cannot use database URL {redact(url)!r}: {e}") from None
    with ThreadPoolExecutor(1, thread_name_prefix="checksum") as pool:
        summed = pool.submit(checksum, df)
        try:
            deleted, where = _load(engine, url, df, as_of, table, schema, summed)
        finally:
            engine.dispose()
    log.info("%s: replaced %d row(s) of %s with %d", where, deleted if deleted >= 0 else 0, as_of, len(df))
    return {"rows": len(df), "table": where, "checksum": summed.result(), "replaced": deleted}


def _load(engine: sa.Engine, url: str, df: pd.DataFrame, as_of: dt.date, table: str, schema: str | None,
          summed: Future[str]) -> tuple[int, str]:
    """``load``'s transaction; returns the rows it replaced and the table's name."""
    t = table_for(table, schema)
    where = f"{schema}.{table}" if schema else table
    try:
        with engine.begin() as conn:
            if schema and conn.dialect.name == "postgresql":
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            t.metadata.create_all(conn, checkfirst=True)
            deleted = conn.execute(sa.delete(t).where(t.c.as_of == as_of)).rowcount
            _insert(conn, t, df)
            n = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.as_of == as_of)).scalar_one()
            if n != len(df):
                raise _Mismatch(f"{where} holds {n} rows for {as_of} after loading, the delivery has {len(df)}")
            back = crm_rows.Checksum()
            try:
                for cols in _read_back(conn, t, as_of):
                    back.update(cols)
            except (pa.ArrowException, ValueError) as e:  # e.g. an existing table whose column has another type
                raise _Mismatch(f"the rows read back from {where} do not have the score file's column types "
                                f"({type(e).__name__}: {str(e)[:200]})") from e
            got, expected = back.hexdigest(), summed.result()
            if got != expected:
                raise _Mismatch(f"checksum of the rows in {where} ({got[:12]}) differs from the delivery's "
                                f"({expected[:12]}): a type or encoding problem in the database")
    except _Mismatch as e:
        raise UserError(f"load rolled back: {e}") from None
    except _Failed as e:
        raise UserError(f"loading into {redact(url)} failed and was rolled back: {e}") from None
    except SQLAlchemyError as e:
        raise UserError(f"loading into {redact(url)} failed and was rolled back: {_brief(e)}") from None
    return deleted, where


class _Mismatch(Exception):
    pass


class _Failed(Exception):
    """The driver refused a row while copying (a duplicate key, a value the column cannot hold)."""
