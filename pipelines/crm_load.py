"""Load a score delivery into a CRM staging table (SQLite, PostgreSQL, anything SQLAlchemy speaks).

One transaction: create the table if missing (primary key ``customer_id, as_of``), replace the rows of
that as_of with the delivery's rows (an upsert by key that also drops customers no longer delivered),
then read the rows back inside the same transaction and compare the row count and a checksum of every
value with the delivery's. Any difference rolls the whole load back.

Everything streams in chunks of ``CHUNK`` rows (PostgreSQL through ``COPY``, other databases through batched
inserts; the read-back through a server-side cursor), and the checksum does not depend on row order, so
neither side is sorted or held whole: at 1M customers the load held 8.3 GiB of row dictionaries and rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from pipelines import score_file
from pipelines.errors import UserError

log = logging.getLogger(__name__)
_TYPES: dict[str, Any] = {"string": sa.Text, "number": sa.Float(precision=53), "integer": sa.BigInteger,
                          "boolean": sa.Boolean, "date": sa.Date}
CHUNK = 5000


def redact(url: str) -> str:
    """A database URL without its password, for logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def table_for(name: str, schema: str | None) -> sa.Table:
    cols = [sa.Column(c.name, _TYPES[c.type], nullable=c.nullable, primary_key=c.name in ("customer_id", "as_of"))
            for c in score_file.COLUMNS if c.name in score_file.NAMES]  # the book profile only
    return sa.Table(name, sa.MetaData(schema=schema), *cols)


def _canon(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return ""
    if isinstance(v, bool | np.bool_):
        return "1" if v else "0"
    if isinstance(v, float | np.floating):
        return _float(v)
    if isinstance(v, pd.Timestamp | dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def _float(v: Any) -> str:
    """A float's text: empty for NaN; + 0.0 turns -0.0 into 0.0, as SQLite stores negative zero."""
    return "" if v != v else f"{float(v) + 0.0:.12g}"


def _stamp(v: Any) -> str:
    return "" if v is pd.NaT else v.date().isoformat()


# the canonical text by exact type, as ``_canon`` would give it: a dict lookup instead of five isinstance checks
# per value (the two checksums took two thirds of a load's time); other types go through ``_canon``
_BY_TYPE: dict[type, Any] = {
    str: lambda v: v, int: str, np.int64: str, float: _float, np.float64: _float, type(None): lambda v: "",
    bool: lambda v: "1" if v else "0", np.bool_: lambda v: "1" if v else "0", dt.date: dt.date.isoformat,
    dt.datetime: lambda v: v.date().isoformat(), pd.Timestamp: _stamp, type(pd.NaT): lambda v: "",
}


def canon(v: Any) -> str:
    """One value's canonical text for the checksum (``_canon``'s rules, dispatched on the exact type)."""
    f = _BY_TYPE.get(type(v))
    return f(v) if f is not None else _canon(v)


class Checksum:
    """The sum, modulo 2**256, of each row's SHA-256 (score-file column order, values canonicalised): a checksum
    of the rows as a multiset, so the delivery and the read-back can be summed in any order, chunk by chunk,
    without sorting either (a database's text order is its collation's, not Python's)."""

    def __init__(self) -> None:
        self.total = 0

    def update(self, rows: Iterable[Sequence[Any]]) -> None:
        for r in rows:
            digest = hashlib.sha256("\x1f".join(map(canon, r)).encode("utf-8")).digest()
            self.total = (self.total + int.from_bytes(digest, "big")) % _MOD

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


_MOD = 1 << 256


def _chunks(df: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, len(df), CHUNK):
        yield df.iloc[start:start + CHUNK]


def checksum(rows: Iterable[Sequence[Any]] | pd.DataFrame) -> str:
    """The rows' ``Checksum``: a delivery's frame (its score-file columns) or rows read back from a table."""
    h = Checksum()
    if isinstance(rows, pd.DataFrame):
        for part in _chunks(rows[score_file.NAMES]):
            h.update(part.itertuples(index=False, name=None))
    else:
        h.update(rows)
    return h.hexdigest()


def _tuples(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    """One chunk's rows as plain Python values in score-file column order (None for null, dates as dates)."""
    return [tuple(r[c] for c in score_file.NAMES) for r in _records(df)]


def _insert(conn: sa.Connection, t: sa.Table, df: pd.DataFrame) -> None:
    """Insert the delivery chunk by chunk: PostgreSQL through ``COPY`` (several times faster than batched
    INSERTs), any other database through executemany."""
    raw: Any = conn.connection.driver_connection
    driver: Any = conn.dialect.dbapi  # the driver module: its own errors are not SQLAlchemy's
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        target = ".".join(f'"{p}"' for p in ((t.schema,) if t.schema else ()) + (t.name,))
        columns = ", ".join(f'"{c}"' for c in score_file.NAMES)
        try:
            with raw.cursor() as cur, cur.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
                for part in _chunks(df):
                    for row in _tuples(part):
                        copy.write_row(row)
        except driver.Error as e:
            raise _Failed(f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
        return
    for part in _chunks(df):
        conn.execute(sa.insert(t), _records(part))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = df[score_file.NAMES].astype(object).where(df[score_file.NAMES].notna(), None)
    recs = out.to_dict("records")
    for r in recs:
        for c in ("as_of", "next_contact_date"):
            v = r[c]
            if isinstance(v, pd.Timestamp):
                r[c] = v.date()
        r["suppressed"] = bool(r["suppressed"])
    return recs


def load(url: str, df: pd.DataFrame, as_of: dt.date, table: str, schema: str | None = None) -> dict[str, Any]:
    """Upsert ``df`` (one delivery) into ``schema.table`` in one verified transaction."""
    expected = checksum(df)
    try:
        engine = sa.create_engine(url)
    except (SQLAlchemyError, ValueError, ModuleNotFoundError) as e:
        raise UserError(f"cannot use database URL {redact(url)!r}: {e}") from None
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
            back = Checksum()
            result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(
                sa.select(*[t.c[c] for c in score_file.NAMES]).where(t.c.as_of == as_of))
            for part in result.partitions():
                back.update(part)
            got = back.hexdigest()
            if got != expected:
                raise _Mismatch(f"checksum of the rows in {where} ({got[:12]}) differs from the delivery's "
                                f"({expected[:12]}): a type or encoding problem in the database")
    except _Mismatch as e:
        raise UserError(f"load rolled back: {e}") from None
    except _Failed as e:
        raise UserError(f"loading into {redact(url)} failed and was rolled back: {e}") from None
    except SQLAlchemyError as e:
        raise UserError(f"loading into {redact(url)} failed and was rolled back: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    finally:
        engine.dispose()
    log.info("%s: replaced %d row(s) of %s with %d", where, deleted if deleted >= 0 else 0, as_of, len(df))
    return {"rows": len(df), "table": where, "checksum": expected, "replaced": deleted}


class _Mismatch(Exception):
    pass


class _Failed(Exception):
    """The driver refused a row while copying (a duplicate key, a value the column cannot hold)."""
