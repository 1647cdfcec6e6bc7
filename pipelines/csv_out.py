"""A CSV writer for the score file: pandas' bytes, assembled in Arrow.

``DataFrame.to_csv`` formats every float through a Python callable and hands each row to the ``csv`` module as
a list of Python objects: at 1M customers that was 21 of the export's 44 s (py-spy, docs/benchmarks.md), and it
grows with the book. Here each column becomes its text once (Arrow casts; floats ``%.<P>g`` in NumPy and Arrow,
pipelines/gformat.py, other formats through ``float_format`` in one ``map``), cells that need it are quoted as the
``csv`` module's ``QUOTE_MINIMAL`` quotes them, and the rows are joined in Arrow, ``CHUNK_ROWS`` at a time, a
chunk per thread (``THREADS``), written in order. The bytes are those of

    df.to_csv(path, index=False, sep=delimiter, encoding="utf-8-sig" or "utf-8", lineterminator="\\n",
              float_format=float_format)

for the columns a score file holds (text, floats, integers, dates, booleans); a test compares the two on
random frames. Anything else (another column type, a single column, which the ``csv`` module writes apart)
is written by pandas itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.intake.text_checks import byte_rows, utf8_bytes
from pipelines import gformat, tracking

CHUNK_ROWS = 200_000  # rows joined at a time: the text of a chunk stays near 100 MB, far from Arrow's 2 GiB
THREADS = max(1, min(4, os.cpu_count() or 1))  # chunks made at once: Arrow's and NumPy's kernels release the GIL
PROBE_ROWS = 4096  # a float column's first rows in a chunk: how many distinct values to expect


def write_csv(df: pd.DataFrame, path: Path, delimiter: str = ",", float_format: str = "%.10g",
              bom: bool = True) -> str:
    """``df`` without its index to ``path``, as ``DataFrame.to_csv`` with these options writes it; returns the
    SHA-256 of the file, hashed as it is written (a 5M-row score file is about 2 GB to read back)."""
    if len(df.columns) < 2 or not all(_supported(df[c]) for c in df.columns) or len(delimiter) != 1:
        df.to_csv(path, index=False, sep=delimiter, encoding="utf-8-sig" if bom else "utf-8", lineterminator="\n",
                  float_format=float_format)
        return tracking.fingerprint(path)
    digest = hashlib.sha256()
    sources = [_source(df[c]) for c in df.columns]  # NumPy or Arrow: sliced per chunk without pandas, in threads
    with open(path, "wb") as f, ThreadPoolExecutor(THREADS) as pool:
        def write(data: bytes | memoryview) -> None:
            digest.update(data)  # hashlib releases the GIL: the threads go on making chunks
            f.write(data)

        header = [_quoted(pa.array([str(c)]), delimiter)[0].as_py() for c in df.columns]
        write(("\ufeff" * bom + delimiter.join(header) + "\n").encode("utf-8"))
        pending: deque[Future[np.ndarray]] = deque()
        for start in range(0, len(df), CHUNK_ROWS):
            part = [src[start:start + CHUNK_ROWS] for src in sources]
            pending.append(pool.submit(_chunk_bytes, part, delimiter, float_format))
            if len(pending) > THREADS:  # in order, with at most THREADS + 1 chunks in memory
                write(pending.popleft().result().data)
        while pending:
            write(pending.popleft().result().data)
    return digest.hexdigest()


def _chunk_bytes(part: list[np.ndarray | pa.Array], delimiter: str, float_format: str) -> np.ndarray:
    """A chunk's rows as UTF-8 bytes, end to end, each row followed by the line terminator."""
    cells = [_quoted(_text(src, float_format), delimiter) for src in part]
    rows = pc.binary_join_element_wise(*cells, delimiter, null_handling="replace", null_replacement="")
    return utf8_bytes(pc.binary_join_element_wise(rows, "", "\n"))[0]


def _supported(s: pd.Series) -> bool:
    """Column types whose text is known here: floats, integers, booleans, text, and dates as Python objects."""
    if s.dtype.kind in "fiub" and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
        return True
    if isinstance(s.dtype, pd.StringDtype):
        return True
    if s.dtype == object:
        kinds = {type(v) for v in s.dropna().to_numpy()}
        return kinds <= {str} or kinds <= {dt.date}
    return False


def _source(s: pd.Series) -> np.ndarray | pa.Array:
    """A column as its values: NumPy for floats, integers and booleans; Arrow for text and dates (no Python
    object per value), in one chunk."""
    if s.dtype.kind in "fiub" and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
        return s.to_numpy(dtype=np.float64 if s.dtype.kind == "f" else None)
    arrow = pa.array(s, from_pandas=True)
    return arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow


def _text(src: np.ndarray | pa.Array, float_format: str) -> pa.Array:
    """The cell text of each value, null where pandas writes an empty cell (``na_rep``)."""
    if isinstance(src, pa.Array):
        return pc.cast(src, pa.string())  # text as it is; dates in ISO, as str(datetime.date)
    if src.dtype.kind == "f":
        p = gformat.precision(float_format)
        probe = src[:PROBE_ROWS].view(np.int64)
        if p is not None and len(np.unique(probe)) > len(probe) // 4:  # mostly distinct (values, uplifts): every
            return gformat.format_g(src, p)  # value at once, which costs less than finding the distinct ones
        # else each distinct value formatted once (calibrated probabilities take few); keyed by the bits, so -0.0
        # is formatted apart from 0.0, and every NaN is one null cell. Either way the text is the same.
        codes, distinct = pd.factorize(src.view(np.int64))
        if p is not None:
            return pc.take(gformat.format_g(distinct.view(np.float64), p), pa.array(codes))
        text = pa.array(list(map(float_format.__mod__, distinct.view(np.float64).tolist())), type=pa.string())
        text = pc.if_else(pc.is_nan(pa.array(distinct.view(np.float64))), pa.scalar(None, pa.string()), text)
        return pc.take(text, pa.array(codes))
    if src.dtype.kind == "b":
        return pc.take(pa.array(["False", "True"]), pa.array(src.astype(np.int8)))
    return pc.cast(pa.array(src), pa.string())  # integers


def _quoted(text: pa.Array, delimiter: str) -> pa.Array:
    """``QUOTE_MINIMAL``: a cell holding the delimiter, a quote or a line feed is quoted, its quotes doubled.

    Those are ASCII bytes, which UTF-8 never uses inside another character, so a scan of the column's bytes tells
    whether any cell needs it (most columns: none, and no cell is examined; a null's leftover bytes can only cause
    a needless look). A column that does, e.g. reasons ("Premium: 1,234"), repeats its values: each distinct one
    is quoted once."""
    special = f'{delimiter}"\n'.encode("ascii")
    raw, _ = utf8_bytes(text)
    if not any(bool((raw == byte).any()) for byte in special):  # compares: faster than a lookup over every byte
        return text
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary
    wanted = np.zeros(256, dtype=bool)
    wanted[list(special)] = True
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(distinct, '"', '""'), '"', "")
    return pc.take(pc.if_else(pa.array(byte_rows(distinct, wanted)), quoted, distinct), encoded.indices)
