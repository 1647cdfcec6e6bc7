"""A score delivery's rows as a database takes them and as the load's checksum reads them, column by column in
Arrow (used by ``pipelines/crm_load.py``).

Every value used to pass through Python one at a time (a type lookup and a format per value, a dictionary per row
for the insert): at 5M customers the load took 433 s, two thirds of it in the two checksums. Here each column is
converted once, in its score-file type, whatever form it arrives in: the delivery's frame (pandas dtypes,
timestamps) or a database's rows read back (Python values; dates as dates or ISO text, booleans as bools or 0/1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines import score_file

KINDS: dict[str, str] = {c.name: c.type for c in score_file.COLUMNS if c.name in score_file.NAMES}
_ARROW: dict[str, pa.DataType] = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(),
                                  "boolean": pa.bool_(), "date": pa.date32()}
_MOD = 1 << 256


def column(values: pd.Series | Sequence[Any], kind: str) -> pa.Array:
    """One column in its score-file type (NaN and None as null; a timestamp's day, as ``Timestamp.date()``)."""
    arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    want = _ARROW[kind]
    if arr.type == want:
        return arr
    if kind == "string" and pa.types.is_large_string(arr.type):
        return arr.cast(want)
    return pc.cast(arr, want, safe=kind != "date")  # a timestamp's time of day is dropped, not refused


def columns(frame: pd.DataFrame) -> list[pa.Array]:
    """A delivery's score-file columns, in score-file order."""
    return [column(frame[name], kind) for name, kind in KINDS.items()]


def transpose(rows: Sequence[Sequence[Any]]) -> list[pa.Array]:
    """Rows read back from a database (score-file column order) as the same columns."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in KINDS]
    return [column(list(values), kind) for values, kind in zip(cols, KINDS.values(), strict=True)]


def _canonical(arr: pa.Array, kind: str) -> pa.Array:
    """A column's canonical text: empty for null, booleans as 1/0, dates in ISO form, a float as the shortest
    text that reads back as the same double (+ 0.0 turns -0.0 into 0.0, as SQLite stores negative zero)."""
    if kind == "boolean":
        text = pc.if_else(arr, "1", "0")
    elif kind == "number":
        text = pc.cast(pc.add(arr, 0.0), pa.string())
    else:
        text = pc.cast(arr, pa.string())
    return pc.fill_null(text, "")


class Checksum:
    """The sum, modulo 2**256, of each row's SHA-256 (its canonical values in score-file column order, joined by
    the unit separator): a checksum of the rows as a multiset, so the delivery and the read-back can be summed in
    any order, chunk by chunk, without sorting either (a database's text order is its collation's)."""

    def __init__(self) -> None:
        self.total = 0

    def update(self, cols: list[pa.Array]) -> None:
        if not len(cols[0]):
            return
        texts = [_canonical(a, kind) for a, kind in zip(cols, KINDS.values(), strict=True)]
        joined = pc.binary_join_element_wise(*texts, "\x1f").cast(pa.binary())
        sha = hashlib.sha256
        self.total = (self.total + sum(int.from_bytes(sha(b).digest(), "big") for b in joined.to_pylist())) % _MOD

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


def copy_csv(cols: list[pa.Array]) -> bytes:
    """The rows as PostgreSQL ``COPY ... FROM STDIN (FORMAT csv)`` input, written by Arrow's CSV writer (a Python
    string per row, joined in Python, was a fifth of a 5M-row load): every text value quoted (so an empty string
    stays apart from null, which is an empty field, and ``\\.`` is never the end-of-data line), floats as their
    shortest exact text, booleans as true/false, dates in ISO form."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_arrays(cols, names=list(KINDS)), sink,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def csv_reader(stream: Any) -> pacsv.CSVStreamingReader:
    """Batches of rows that PostgreSQL's ``COPY ... TO STDOUT (FORMAT csv)`` wrote to ``stream`` (score-file column
    order), typed as the score file's columns. A value that is not its column's type raises ``pa.ArrowInvalid``."""
    return pacsv.open_csv(
        stream, read_options=pacsv.ReadOptions(column_names=list(KINDS), block_size=1 << 22),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: _ARROW[k] for n, k in KINDS.items()}, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]))


def python_rows(cols: list[pa.Array], sqlite: bool = False) -> list[tuple[Any, ...]]:
    """The rows as Python tuples for a driver's ``executemany`` (None for null). ``sqlite``: dates as ISO text and
    booleans as 1/0, the way SQLAlchemy's SQLite types store them, so its read-back gives the same values."""
    lists = []
    for arr, kind in zip(cols, KINDS.values(), strict=True):
        if sqlite and kind == "date":
            arr = pc.cast(arr, pa.string())
        elif sqlite and kind == "boolean":
            arr = pc.cast(arr, pa.int64())
        lists.append(arr.to_pylist())
    return list(zip(*lists, strict=True))
