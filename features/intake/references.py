"""The rules that look beyond one row: duplicate keys and events, and references to other tables.

They run after the row-local rules (``validation.check_rows``), on the rows that passed them, in this order:
duplicate key, duplicate event, each foreign key, a policy issued before its holder's birth, then references
into the table itself. Duplicates keep the first occurrence among those rows. A reference rule is row-local
once the parent keys are known (``reference_flags``), so a table validated in chunks can flag references in
one pass and apply them after the duplicates are known over all chunks (``features.intake.chunked``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.intake.contract import TableSpec
from features.intake.keys import Ids, member

BIRTHS = "customers.birth_date"  # parents entry: accepted customers' birth dates, for policies
Flag = tuple[str, str, pd.Series]  # (rule, column, mask)


def reference_flags(df: pd.DataFrame, spec: TableSpec, parents: Mapping[str, Ids],
                    known: Mapping[tuple[str, str], np.ndarray] | None = None) -> list[Flag]:
    """Rows that break a reference to another table, in the order the rules apply (self references excluded).
    ``known``: per (parent table, referencing column), whether each row's value is among the parent's keys, when
    the caller has looked it up already (a chunk's customer keys answer its customer_id reference)."""
    flags: list[Flag] = []
    for fk in spec.foreign_keys:
        if fk.table == spec.name:
            continue
        keys = parents.get(fk.table)
        if keys is None:
            continue  # the referenced table is optional and absent
        v = df[fk.column]
        found = (known or {}).get((fk.table, fk.column))
        among = _member(v, keys) if found is None else pd.Series(found, index=v.index)
        flags.append(("orphan_reference", fk.column, (v.notna() & ~among).fillna(False).astype(bool)))
    births = parents.get(BIRTHS)
    if births is not None and "issue_date" in df:  # a policy issued before its holder was born
        born = df["customer_id"].map(births)
        flags.append(("issued_before_birth", "issue_date",
                      (born.notna() & (df["issue_date"] < born)).fillna(False).astype(bool)))
    return flags


def _member(v: pd.Series, keys: Ids) -> pd.Series:
    """Whether each value is among ``keys``, by Arrow's hash (``features.intake.keys``). A chunked table checks every
    chunk against the same parent keys: the caller converts them to Arrow once (``keys.prepared``)."""
    return pd.Series(member(v, keys), index=v.index)


def keys_and_references(df: pd.DataFrame, spec: TableSpec, parents: Mapping[str, Ids], reason: pd.Series,
                        reason_col: pd.Series, detail: dict[int, list[str]]) -> pd.Series:
    """Duplicate keys and events, orphans and policies issued before birth, among rows that passed the row
    checks (marked in place); returns the rows still accepted."""
    ok = reason.isna()
    # Keys and duplicate events among rows that passed the row checks.
    dup_key = ok & df.loc[ok, spec.key].duplicated(keep="first").reindex(df.index, fill_value=False)
    mark(reason, reason_col, detail, dup_key, "duplicate_key", spec.key)
    ok = reason.isna()
    if spec.duplicate_event_key:
        k = list(spec.duplicate_event_key)
        dup_ev = df.loc[ok, k].duplicated(keep="first").reindex(df.index, fill_value=False)
        dup_ev &= ~df["holdout"].fillna(False).astype(bool) if "holdout" in df else True
        mark(reason, reason_col, detail, dup_ev, "duplicate_event", ",".join(k))
        ok = reason.isna()
    for rule, column, flag in reference_flags(df, spec, parents):
        mark(reason, reason_col, detail, ok & flag, rule, column)
        ok = reason.isna()
    # Self references are resolved against this table's accepted keys.
    for fk in spec.foreign_keys:
        if fk.table != spec.name:
            continue
        v = df[fk.column]
        orphan = ok & v.notna() & ~_member(v, df.loc[ok, fk.ref_column])
        mark(reason, reason_col, detail, orphan, "orphan_reference", fk.column)
        ok = reason.isna()
    return ok


def mark(reason: pd.Series, reason_col: pd.Series, detail: dict[int, list[str]], mask: pd.Series,
         rule: str, column: str) -> None:
    """Give ``rule`` as the reason of the rows in ``mask`` that have none yet."""
    mask = mask.fillna(False).astype(bool) & reason.isna()
    reason[mask] = rule
    reason_col[mask] = column
    for i in np.flatnonzero(mask.to_numpy()):
        detail.setdefault(int(i), []).append(f"{rule}:{column}")
