"""Load a score delivery into a CRM staging table (SQLite, PostgreSQL, anything SQLAlchemy speaks).

One transaction: create the table if missing (primary key ``customer_id, as_of``), replace the rows of
that as_of with the delivery's rows (an upsert by key that also drops customers no longer delivered),
then read the rows back inside the same transaction and compare the row count and a checksum of every
value with the delivery's. Any difference rolls the whole load back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
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


def checksum(rows: list[tuple[Any, ...]] | pd.DataFrame) -> str:
    """SHA-256 of the rows in score-file column order, sorted by customer_id, values canonicalised."""
    if isinstance(rows, pd.DataFrame):
        rows = list(rows[score_file.NAMES].sort_values("customer_id").itertuples(index=False, name=None))
    else:
        rows = sorted(rows, key=lambda r: str(r[0]))
    h = hashlib.sha256()
    for r in rows:
        h.update(("\x1f".join(map(canon, r)) + "\n").encode("utf-8"))
    return h.hexdigest()


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
            recs = _records(df)
            for i in range(0, len(recs), CHUNK):
                conn.execute(sa.insert(t), recs[i:i + CHUNK])
            n = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.as_of == as_of)).scalar_one()
            if n != len(df):
                raise _Mismatch(f"{where} holds {n} rows for {as_of} after loading, the delivery has {len(df)}")
            got = checksum([tuple(r) for r in conn.execute(
                sa.select(*[t.c[c] for c in score_file.NAMES]).where(t.c.as_of == as_of))])
            if got != expected:
                raise _Mismatch(f"checksum of the rows in {where} ({got[:12]}) differs from the delivery's "
                                f"({expected[:12]}): a type or encoding problem in the database")
    except _Mismatch as e:
        raise UserError(f"load rolled back: {e}") from None
    except SQLAlchemyError as e:
        raise UserError(f"loading into {redact(url)} failed and was rolled back: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    finally:
        engine.dispose()
    log.info("%s: replaced %d row(s) of %s with %d", where, deleted if deleted >= 0 else 0, as_of, len(df))
    return {"rows": len(df), "table": where, "checksum": expected, "replaced": deleted}


class _Mismatch(Exception):
    pass
