"""File I/O for the stages: clear errors on bad inputs, atomic all-or-nothing outputs."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import InputError
from pipelines.failpoints import failpoint

log = logging.getLogger(__name__)
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class StagedOutputs:
    """Collect a stage's outputs under temporary names and publish them together.

    Each file is written beside its destination as ``.<name>.tmp-<id>`` and renamed into place
    only when the whole stage succeeded, so a failed or killed stage never leaves a partial or a
    mixed set of outputs (a rename within one directory is atomic on POSIX).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._token = uuid.uuid4().hex[:8]

    def path(self, dest: str | Path) -> Path:
        """Temporary path to write ``dest`` to; it is published on commit."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{self._token}")
        self._pending.append((tmp, dest))
        return tmp

    def parquet(self, df: pd.DataFrame, dest: str | Path) -> None:
        df.to_parquet(self.path(dest), index=False)

    def json(self, obj: Any, dest: str | Path) -> None:
        self.path(dest).write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n",
                                   encoding="utf-8")

    def commit(self, marker: Path | None = None) -> None:
        """Publish every staged file. With ``marker`` (a manifest among the staged files), follow a commit
        protocol readers can rely on: the old marker is removed first, the data files are renamed, and the
        new marker is renamed in last, each flushed to disk before. A kill at any point leaves either the
        old files with their marker, or no marker (not ready), or the new files with theirs; never a
        marker that disagrees with its files."""
        for tmp, dest in self._pending:
            if not tmp.exists():
                raise RuntimeError(f"staged output {dest} was never written")
        pending = list(self._pending)
        failpoint("publish:staged")
        if marker is not None:
            marker = Path(marker)
            if marker not in [d for _, d in pending]:
                raise RuntimeError(f"marker {marker} is not among the staged outputs")
            for tmp, _ in pending:
                _fsync(tmp)
            pending = [(t, d) for t, d in pending if d != marker] + [(t, d) for t, d in pending if d == marker]
            marker.unlink(missing_ok=True)
            _fsync_dir(marker.parent)
            failpoint("publish:marker_removed")
        for i, (tmp, dest) in enumerate(pending):
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            if i == 0:
                failpoint("publish:first_renamed")
        if marker is not None:
            _fsync_dir(marker.parent)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_staging(folder: Path) -> int:
    """Delete temporary files a killed run left in ``folder`` (they were never published)."""
    stale = list(Path(folder).glob(".*.tmp-*")) if Path(folder).is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d unpublished temporary file(s) from an interrupted run in %s", len(stale), folder)
    return len(stale)


@contextmanager
def staged_outputs(marker: str | Path | None = None) -> Iterator[StagedOutputs]:
    """Stage outputs; publish them together when the block succeeds (see ``StagedOutputs.commit``)."""
    out = StagedOutputs()
    try:
        yield out
    except BaseException:
        out.discard()
        raise
    try:
        out.commit(Path(marker) if marker is not None else None)
    except BaseException:  # a failed publish (disk full, read-only) leaves no temporary files behind either
        out.discard()
        raise


# ---------------------------------------------------------------------------------------------
# Reading raw tables
# ---------------------------------------------------------------------------------------------
def _sniff_delimiter(header: str) -> str | None:
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else None


def _check_header(head: str, path: Path, table: str, delimiter: str) -> None:
    """A column name twice in the header would be renamed silently (``gender.1``): stop and name it."""
    first = head.splitlines()[0] if head else ""
    names = next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
    dups = sorted(n for n, k in Counter(n.strip() for n in names).items() if k > 1)
    if dups:
        raise InputError(f"{path} (table '{table}'): the header names {dups} more than once (rule: "
                         "duplicate_header); rename or remove the copies")


def _csv_encoding(path: Path, table: str, encoding: str, delimiter: str, names: list[str] | None) -> str:
    """The codec to read ``path`` with, after checking its first 64 KiB decode (and its header's names)."""
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError as e:
        raise InputError(f"cannot read {path} (table '{table}'): {e.strerror}") from None
    try:
        head.decode(enc)
    except UnicodeDecodeError as e:
        if enc.startswith("utf-8") and e.start > len(head) - 4:
            pass  # a multi-byte character cut by our 64 KiB read; the full read decides
        else:
            hint = ""
            try:
                head.decode("gbk")
                hint = (" It decodes as GBK, common in Chinese exports: set validate.source.encoding: gbk "
                        "(or re-export as UTF-8).")
            except UnicodeDecodeError:
                pass
            raise InputError(
                f"{path} (table '{table}') is not valid {encoding}: byte 0x{head[e.start]:02x} at offset "
                f"{e.start} cannot be decoded.{hint}"
            ) from None
    if not names:
        _check_header(head.decode(enc, errors="replace"), path, table, delimiter)
    return enc


@contextmanager
def _csv_errors(path: Path, table: str, encoding: str, delimiter: str) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as e:
        raise InputError(f"{path} (table '{table}') is not valid {encoding} (offset {e.start}); "
                         "set validate.source.encoding (utf-8 or gbk)") from None
    except pd.errors.ParserError as e:
        raise InputError(f"{path} (table '{table}') could not be parsed with delimiter {delimiter!r}: {e}") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} (table '{table}') is empty: expected a header row") from None


def read_csv_table(path: Path, table: str, encoding: str, delimiter: str,
                   names: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV export as text columns, with errors that say what to change (``names``: no header row)."""
    return next(iter_csv_table(path, table, encoding, delimiter, names, chunk_rows=None))


def iter_csv_table(path: Path, table: str, encoding: str, delimiter: str, names: list[str] | None = None,
                   chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A CSV export as text columns, in chunks of ``chunk_rows`` rows (None: one frame). Blank lines are
    dropped and counted in each frame's ``attrs['blank_lines']``."""
    enc = _csv_encoding(path, table, encoding, delimiter, names)
    kwargs: dict[str, Any] = dict(sep=delimiter, dtype=str, encoding=enc, keep_default_na=False, na_values=[""],
                                  engine="c", header=None if names else "infer", names=names or None,
                                  skip_blank_lines=False)
    with _csv_errors(path, table, encoding, delimiter):
        if chunk_rows is None:
            yield _csv_frame(pd.read_csv(path, **kwargs), path, table, delimiter, names)
            return
        with pd.read_csv(path, chunksize=chunk_rows, **kwargs) as reader:
            for df in reader:
                yield _csv_frame(df, path, table, delimiter, names)


def _csv_frame(df: pd.DataFrame, path: Path, table: str, delimiter: str, names: list[str] | None) -> pd.DataFrame:
    blank = df.isna().all(axis=1).to_numpy()  # empty lines (and lines of empty fields): counted, then dropped
    if blank.any():
        df = df[~blank].reset_index(drop=True)
        log.warning("%s (table '%s'): %d blank line(s) skipped", path, table, int(blank.sum()))
    df.attrs["blank_lines"] = int(blank.sum())
    if names and df.iloc[:, -1].isna().all() and len(df):
        raise InputError(f"{path} (table '{table}') has fewer columns than the {len(names)} names given "
                         f"(the last, '{names[-1]}', is empty in every row): check the names and the delimiter")
    if df.shape[1] == 1:
        header = str(df.columns[0])
        sniffed = _sniff_delimiter(header.replace(delimiter, ""))
        if sniffed and sniffed != delimiter:
            raise InputError(
                f"{path} (table '{table}') has a single column {header[:80]!r} with delimiter {delimiter!r}; "
                f"the header looks {_DELIMITERS[sniffed]}-delimited: set validate.source.delimiter: "
                f"{sniffed!r}"
            )
    return df


def read_table(directory: str | Path, table: str, fmt: str, encoding: str = "utf-8",
               delimiter: str = ",", required: bool = True, file: str | None = None,
               names: list[str] | None = None) -> tuple[pd.DataFrame | None, Path]:
    """Read ``<directory>/<table>.<fmt>`` (or ``<directory>/<file>``); (None, path) for an absent optional table."""
    path = _table_path(directory, table, fmt, required, file)
    if path is None:
        return None, Path(directory) / (file or f"{table}.{fmt}")
    if fmt == "csv":
        return read_csv_table(path, table, encoding, delimiter, names), path
    try:
        return pd.read_parquet(path), path
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(f"{path} (table '{table}') is not a readable Parquet file: {e}") from None


def iter_table(directory: str | Path, table: str, fmt: str, chunk_rows: int, encoding: str = "utf-8",
               delimiter: str = ",", required: bool = True, file: str | None = None,
               ) -> tuple[Iterator[pd.DataFrame] | None, Path]:
    """``read_table`` in chunks of at most ``chunk_rows`` rows, for a table too large to read at once."""
    path = _table_path(directory, table, fmt, required, file)
    if path is None:
        return None, Path(directory) / (file or f"{table}.{fmt}")
    if fmt == "csv":
        return iter_csv_table(path, table, encoding, delimiter, chunk_rows=chunk_rows), path
    return _iter_parquet(path, table, chunk_rows), path


def _iter_parquet(path: Path, table: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield pa.Table.from_batches([batch], schema=schema).to_pandas()
    except (OSError, pa.ArrowException) as e:  # pyarrow raises several types for corrupt files
        raise InputError(f"{path} (table '{table}') is not a readable Parquet file: {e}") from None


def _table_path(directory: str | Path, table: str, fmt: str, required: bool, file: str | None) -> Path | None:
    """The table's file; None for an absent optional table; an InputError naming what is there otherwise."""
    path = Path(directory) / (file or f"{table}.{fmt}")
    if not path.is_file():
        if not required:
            log.info("optional table %s not found at %s: skipped", table, path)
            return None
        present = sorted(p.name for p in Path(directory).glob("*")) if Path(directory).is_dir() else []
        where = f"; the folder has: {', '.join(present[:10]) or 'nothing'}" if present or Path(directory).is_dir() \
            else f"; the folder {directory} does not exist"
        raise InputError(f"input file {path} for table '{table}' not found{where}. Check validate.source "
                         "in params.yaml (dir, format).")
    return path
