"""What each snapshot has seen of the input tables, as a fingerprint: the key of the features stage's cache.

A snapshot at ``s`` reads contacts, claims and customers dated before ``s``, and policies as they stood
before its horizon ``h`` (``s``, or ``s + H`` when its labels are known): a policy's lapse, surrender or
maturity date on or after ``h`` is invisible to it. A monthly re-run sees the same old months, so every
snapshot whose fingerprint is unchanged can be read back instead of recomputed; a corrected old month
changes the fingerprint of exactly the snapshots whose horizon lies after it.

How: one scan per table sums a 64-bit hash of each row's *read* columns per day (``day_sums_sql``);
a snapshot's fingerprint of a table is the sum over the days before its horizon (``Prefix``). A policy
row changes as its dates pass, so it adds its state at each of its dates and takes back the state
before: the prefix at ``h`` is then the hash of the row as the snapshot sees it (dates before ``h``
kept, later ones blank). The dense ``customer_key`` is never hashed (new customers shift it); the text
ids are. Sums, not XORs: two equal rows do not cancel.

Only the columns the snapshot SQL reads are hashed, so a column it ignores (a policy's current
``status``, a contact's ``agent_id``) can change without invalidating anything;
``tests/unit/features/test_fingerprint.py`` checks that changing any other column leaves the features unchanged.

Pure: SQL text and arithmetic on the sums; the caller runs the SQL.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from features.snapshots.query import POP_COLUMNS

# Per table: (the date or timestamp from whose day on a row is visible, the other columns the snapshot SQL reads).
READ_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "customers": ("created_date", tuple(c for c in POP_COLUMNS if c not in ("customer_key", "created_date"))),
    "contacts": ("contact_ts", ("customer_id", "channel", "direction", "outcome", "holdout")),
    "claims": ("claim_date", ("customer_id", "amount", "status")),
}
POLICY_COLUMNS = ("customer_id", "product_line", "annual_premium", "sum_assured", "payment_mode")
POLICY_DATES = ("lapse_date", "surrender_date", "maturity_date")  # seen once before the horizon
TABLES = ("customers", "policies", "claims", "contacts")
# Bump when the cache's layout or the meaning of a fingerprint changes: old entries stop matching.
FORMAT = 2  # 2: a scoring snapshot's entry may hold the whole feature table (snapshot_date)


def day_sums_sql(table: str) -> str:
    """``(day, hash_sum, n)`` per day for ``table``; a row counts from the day after ``day``."""
    if table == "policies":
        return _policy_sums_sql()
    when, cols = READ_COLUMNS[table]
    return (f"SELECT CAST({when} AS DATE) AS day, SUM(CAST(hash({when}, {', '.join(cols)}) AS HUGEINT)) AS hash_sum, "
            f"COUNT(*) AS n FROM {table} GROUP BY ALL")


def _policy_state(op: str, day: str) -> str:
    """The hash of a policy row as a snapshot sees it whose horizon is just after ``day`` (``op`` ``<=``) or
    on it (``<``): each of its dates kept when ``date op day``, blank otherwise."""
    dates = ", ".join(f"CASE WHEN {c} {op} {day} THEN {c} END" for c in POLICY_DATES)
    return f"CAST(hash(issue_date, {', '.join(POLICY_COLUMNS)}, {dates}) AS HUGEINT)"


def _policy_sums_sql() -> str:
    """A policy adds its state on its issue day, and at each later date of its own the state from that day on
    less the state before it; a date equal to an earlier one (or the issue day) adds nothing twice. Four
    plain scans: 1.5 s at 7.5M policies, against 2.7 s for one scan unnesting each row's sorted dates."""
    parts = [f"SELECT issue_date AS day, SUM({_policy_state('<=', 'issue_date')}) AS hash_sum, COUNT(*) AS n "
             "FROM policies GROUP BY ALL"]
    for k, c in enumerate(POLICY_DATES):
        distinct = "".join(f" AND {c} IS DISTINCT FROM {p}" for p in POLICY_DATES[:k])
        parts.append(f"SELECT {c} AS day, SUM({_policy_state('<=', c)} - {_policy_state('<', c)}) AS hash_sum, "
                     f"0 AS n FROM policies WHERE {c} > issue_date{distinct} GROUP BY ALL")
    return "\nUNION ALL\n".join(parts)


@dataclass(frozen=True)
class Prefix:
    """Running sums of one table's day sums: ``at(h)`` is what a snapshot with horizon ``h`` saw."""

    days: tuple[dt.date, ...]
    sums: tuple[int, ...]  # sums[k] = total over days[:k]
    counts: tuple[int, ...]

    @classmethod
    def of(cls, rows: Sequence[tuple[dt.date | None, int, int]]) -> Prefix:
        dated = sorted((d, int(s), int(n)) for d, s, n in rows if d is not None)  # an undated row is never seen
        sums, counts = [0], [0]
        for _, s, n in dated:
            sums.append(sums[-1] + s)
            counts.append(counts[-1] + n)
        return cls(tuple(d for d, _, _ in dated), tuple(sums), tuple(counts))

    def at(self, horizon: dt.date) -> tuple[int, int]:
        """(hash sum mod 2^128, rows) over the days strictly before ``horizon``."""
        k = bisect.bisect_left(self.days, horizon)
        return self.sums[k] % (1 << 128), self.counts[k]


def horizons(date: dt.date, labels_known: bool, horizon_days: int) -> dict[str, dt.date]:
    """Per table, the first day a snapshot does not see."""
    h = date + dt.timedelta(days=horizon_days) if labels_known else date
    return {"customers": date, "contacts": date, "claims": date, "policies": h}


def snapshot_key(sql: str, date: dt.date, labels_known: bool, horizon_days: int,
                 prefixes: Mapping[str, Prefix], engine: str) -> str:
    """A snapshot's cache key: its SQL (every parameter and definition that shapes it), its date, the
    engine's version (hashes and numerics are the engine's) and what it saw of each table."""
    seen = {t: [str(v) for v in prefixes[t].at(h)] for t, h in horizons(date, labels_known, horizon_days).items()}
    payload = json.dumps({"format": FORMAT, "sql": sql, "date": date.isoformat(), "engine": engine, "seen": seen},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
