"""Text ids looked up by Arrow's hash: a key's position among unique ids, whether it is among ids, its mapped value.

pandas 3 keeps text as Arrow-backed ``str``. Its ``Series.isin`` turns every value of the set into a Python object
first, and ``Index.get_indexer`` is slow on text too: 2M keys against 1M ids took 3.7 s by ``get_indexer`` and
1.1 s by ``pyarrow.compute.index_in`` (5M ids: 8.4 s and 2.4 s), and these lookups were a quarter of ``validate``
at 1M customers and of ``segment`` before. Validation (references, customer keys) and the plan (customer rows)
look customers up this way. Ids that are not text (a user's integer keys) take pandas' own lookup.

Arrow builds its hash of ``ids`` again on every call, on one core: 1.9 s for 2M keys against 5M ids, every chunk
of a long table. From ``JOIN_ROWS`` ids the lookup is a hash join in DuckDB instead (0.9 s there, both cores; 0.3
against 0.8 s for 1M ids), with the same answer: docs/benchmarks.md. Few ids are quicker hashed by Arrow, however many
the keys (850k keys against 50k ids: 41 against 95 ms).

Pure: Series, Index or Arrow arrays in, NumPy arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Ids: TypeAlias = "pd.Series | pd.Index | pa.Array | pa.ChunkedArray"
# Ids at least this many: looked up by DuckDB's join. Below, Arrow's hash is as fast or faster (2M keys against 100k
# ids: 246 against 244 ms; against 200k, 465 against 265 ms; 100k keys against 100k ids: 29 against 57 ms).
JOIN_ROWS = 200_000


def as_arrow(ids: Ids) -> pa.Array | None:
    """``ids`` as one Arrow text array (nulls kept), or None when they are not text. A caller that looks up many
    batches against the same ids converts them once (1 s for 5M ids)."""
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        try:
            ids = pa.array(ids, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    if isinstance(ids, pa.ChunkedArray):  # a Series read in batches may hold its text in several chunks
        ids = ids.combine_chunks()
    if pa.types.is_string(ids.type):
        ids = ids.cast(pa.large_string())
    return ids if pa.types.is_large_string(ids.type) else None


def prepared(ids: Ids) -> Ids:
    """``ids`` made ready for many lookups: one Arrow array when they are text, else as they are."""
    arrow = as_arrow(ids)
    return ids if arrow is None else arrow


def _pandas(ids: Ids) -> pd.Index:
    return pd.Index(ids.to_pandas() if isinstance(ids, pa.Array | pa.ChunkedArray) else ids)


def positions(keys: Ids, ids: Ids) -> np.ndarray:
    """Each key's position in ``ids`` (unique), -1 where it is absent or null; int64."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    k, v = as_arrow(keys), as_arrow(ids)
    if k is None or v is None:
        return _pandas(ids).get_indexer(_pandas(keys)).astype(np.int64)
    if len(v) >= JOIN_ROWS:
        at = _joined(k, v)
        if at is not None:
            return at
    found = pc.index_in(k, value_set=v, skip_nulls=True)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _joined(k: pa.Array, v: pa.Array) -> np.ndarray | None:
    """``positions`` by a hash join in DuckDB: each matched key's row number and id position, scattered into
    -1s. None when a key matched twice (``ids`` not unique): Arrow's lookup then answers with the first."""
    found = _join(k, v, "SELECT i, p FROM k JOIN v ON k.key = v.id")
    out = np.full(len(k), -1, np.int64)
    out[found.column("i").to_numpy()] = found.column("p").to_numpy()
    return out if int((out >= 0).sum()) == found.num_rows else None


def _join(k: pa.Array, v: pa.Array, sql: str) -> pa.Table:
    """``sql`` over the keys as ``k(i, key)`` and the ids as ``v(p, id)`` (``i``, ``p``: their positions)."""
    with duckdb.connect() as con:
        con.register("k", pa.table({"i": np.arange(len(k), dtype=np.int64), "key": k}))
        con.register("v", pa.table({"p": np.arange(len(v), dtype=np.int64), "id": v}))
        return con.sql(sql).to_arrow_table()


def member(keys: Ids, ids: Ids) -> np.ndarray:
    """Whether each key is among ``ids`` (duplicates allowed); a null key is never a member. bool."""
    if len(keys) == 0:
        return np.zeros(0, bool)
    k, v = as_arrow(keys), as_arrow(ids)
    if k is None or v is None:
        return np.asarray(_pandas(keys).isin(_pandas(ids)), bool) & pd.notna(np.asarray(_pandas(keys), object))
    if len(v) >= JOIN_ROWS:
        found = _join(k, v, "SELECT i FROM k SEMI JOIN v ON k.key = v.id")
        out = np.zeros(len(k), bool)
        out[found.column("i").to_numpy()] = True
        return out
    return pc.is_in(k, value_set=v, skip_nulls=True).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def mapped(keys: pd.Series, mapping: Mapping[Any, Any]) -> pd.Series:
    """``keys.map(mapping)`` with each distinct key mapped once: pandas 3 maps an Arrow text column value by value
    (a tier or quadrant per customer, 3 s at 1M customers in segment). The same values, dtype and index."""
    codes, uniques = pd.factorize(keys)
    distinct = list(uniques) + ([None] if (codes < 0).any() else [])  # a null maps as Series.map maps it
    small = pd.Series(distinct, dtype=keys.dtype).map(mapping)
    return small.take(np.where(codes < 0, len(uniques), codes)).set_axis(keys.index)
