"""Bring your own data: translate a source export's columns, dates and codes into the data contract.

A ``TableMapping`` says, for one contract table, which source column feeds each contract column, how its
dates are written, which source codes mean which contract values, and constants for columns the source
does not have. ``apply_mapping`` returns a frame with the contract's column names and ISO dates; the
contract's own validation then decides what is acceptable, so an unmapped code or a malformed date is
quarantined with its rule and count rather than silently changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.intake.contract import TableSpec


class MappingError(ValueError):
    """The mapping does not fit the source file (names the table, the mapping key and the columns)."""


class TableMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None                 # relative to source.dir; default <table>.<format>
    format: str | None = Field(default=None, pattern=r"^(csv|parquet)$")
    encoding: str | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    columns: dict[str, str] = {}            # contract column -> source column (only those that differ)
    dates: dict[str, str] = {}              # contract column -> strptime format of the source, e.g. "%Y/%m/%d"
    values: dict[str, dict[str, str]] = {}  # contract column -> {source code: contract value}
    defaults: dict[str, Any] = {}           # contract column -> constant, for columns the source lacks


def apply_mapping(df: pd.DataFrame, mapping: TableMapping, spec: TableSpec, source: str) -> pd.DataFrame:
    """The source frame in contract shape (extra source columns are dropped)."""
    key = f"validate.source.tables.{spec.name}"
    named = set(mapping.columns) | set(mapping.dates) | set(mapping.values) | set(mapping.defaults)
    unknown = sorted(named - set(spec.column_names))
    if unknown:
        raise MappingError(f"{key} names columns that are not in the '{spec.name}' contract: {unknown} "
                           f"(contract columns: {', '.join(spec.column_names)})")
    absent = {c: s for c, s in mapping.columns.items() if s not in df.columns}
    if absent:
        raise MappingError(f"{source}: {key}.columns maps to source columns that are not in the file: "
                           + ", ".join(f"{c} <- '{s}'" for c, s in absent.items())
                           + f". The file has: {', '.join(map(str, df.columns[:40]))}")
    out = pd.DataFrame(index=df.index)
    for col in spec.column_names:
        src_col = mapping.columns.get(col, col)
        if src_col in df.columns:
            out[col] = df[src_col]
        elif col in mapping.defaults:
            out[col] = mapping.defaults[col]
    for col, fmt in mapping.dates.items():
        if col in out:
            out[col] = _iso_dates(out[col], fmt, with_time=spec.column(col).dtype == "timestamp")
            present = out[col].notna()
            if present.any() and out[col][present].astype(str).str.endswith(f" (not {fmt})").all():
                raise MappingError(f"{source}: {key}.dates.{col}: no value matches the format {fmt!r} (rule: "
                                   f"date_format, {int(present.sum()):,} values); check the format against the file")
    for col, codes in mapping.values.items():
        if col in out:
            s = out[col]
            out[col] = s.map(lambda v, codes=codes: codes.get(str(v), v) if pd.notna(v) else v)
    return out


def _iso_dates(s: pd.Series, fmt: str, with_time: bool) -> pd.Series:
    """Dates written ``fmt`` become ISO text. A value that does not match ``fmt`` becomes ``"<value> (not fmt)"``,
    which the contract quarantines as ``type`` with what arrived: never re-read by another format (an ISO
    fallback would silently accept 2026-03-04 under a declared %d/%m/%Y)."""
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and pd.isna(v)) or (isinstance(v, str) and not v.strip()):
            return None
        try:
            d = dt.datetime.strptime(str(v).strip(), fmt)
        except ValueError:
            return f"{str(v).strip()} (not {fmt})"
        return d.isoformat(sep=" ") if with_time else d.date().isoformat()
    return s.map(one)
