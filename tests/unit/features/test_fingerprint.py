"""Snapshot fingerprints: what a snapshot saw, and nothing it did not (the features stage's cache key)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.intake.contract import TABLES as CONTRACT
from features.snapshots.fingerprint import (
    POLICY_COLUMNS,
    POLICY_DATES,
    READ_COLUMNS,
    TABLES,
    Prefix,
    day_sums_sql,
    horizons,
    snapshot_key,
)
from features.snapshots.plan import snapshot_plan
from features.snapshots.query import features_frame
from pipelines.interim import register_tables
from pipelines.params import Params

H = 90


def _prefixes(con: duckdb.DuckDBPyConnection) -> dict[str, Prefix]:
    return {t: Prefix.of(con.execute(day_sums_sql(t)).fetchall()) for t in TABLES}


def _clipped_policy_sum(con: duckdb.DuckDBPyConnection, h: dt.date) -> tuple[int, int]:
    """The direct definition: every policy issued before ``h``, its dates from ``h`` on blanked."""
    dates = ", ".join(f"CASE WHEN {c} < $h THEN {c} END" for c in POLICY_DATES)
    s, n = con.execute(f"SELECT SUM(CAST(hash(issue_date, {', '.join(POLICY_COLUMNS)}, {dates}) AS HUGEINT)), "
                       "COUNT(*) FROM policies WHERE issue_date < $h", {"h": h}).fetchall()[0]
    return int(s or 0) % (1 << 128), int(n)


def test_a_policys_running_sum_is_the_policy_as_each_horizon_saw_it(interim: Path) -> None:
    """Summing each policy's state changes day by day gives, at every horizon, the hash of the rows with
    the dates after the horizon blanked: a lapse recorded later does not change what an old snapshot saw."""
    con = duckdb.connect()
    register_tables(con, interim)
    prefix = _prefixes(con)["policies"]
    lo, hi = con.execute("SELECT MIN(issue_date), MAX(GREATEST(issue_date, lapse_date, surrender_date)) "
                         "FROM policies").fetchall()[0]
    for h in pd.date_range(lo, hi + dt.timedelta(days=2), periods=25).date:
        assert prefix.at(h) == _clipped_policy_sum(con, h), h


def test_prefix_counts_rows_strictly_before_the_horizon() -> None:
    d = dt.date(2026, 1, 1)
    p = Prefix.of([(d, 5, 1), (d + dt.timedelta(days=2), -3, 2), (None, 99, 9)])  # type: ignore[list-item]
    assert p.at(d) == (0, 0)
    assert p.at(d + dt.timedelta(days=1)) == (5, 1) == p.at(d + dt.timedelta(days=2))
    assert p.at(d + dt.timedelta(days=3)) == (2, 3)


def test_the_key_changes_with_what_the_snapshot_saw_and_only_that(interim: Path) -> None:
    con = duckdb.connect()
    register_tables(con, interim)
    prefixes = _prefixes(con)
    s = dt.date(2025, 6, 30)
    key = snapshot_key("SELECT 1", s, True, H, prefixes, "duckdb x")
    assert key == snapshot_key("SELECT 1", s, True, H, prefixes, "duckdb x")
    for other in [("SELECT 2", s, True, "duckdb x"), ("SELECT 1", s + dt.timedelta(days=1), True, "duckdb x"),
                  ("SELECT 1", s, False, "duckdb x"), ("SELECT 1", s, True, "duckdb y")]:
        assert snapshot_key(other[0], other[1], other[2], H, prefixes, other[3]) != key
    # one contact added after the snapshot: same key; one added before it: a new key
    for ts, same in ((s + dt.timedelta(days=3), True), (s - dt.timedelta(days=40), False)):
        con.execute("CREATE OR REPLACE TEMP TABLE extra AS SELECT * FROM contacts LIMIT 1")
        con.execute("UPDATE extra SET contact_id = 'NEW', contact_ts = $ts", {"ts": dt.datetime.combine(ts, dt.time())})
        con.execute("CREATE OR REPLACE TEMP VIEW contacts2 AS SELECT * FROM contacts UNION ALL SELECT * FROM extra")
        changed = dict(prefixes, contacts=Prefix.of(con.execute(day_sums_sql("contacts").replace(
            "FROM contacts", "FROM contacts2")).fetchall()))
        assert (snapshot_key("SELECT 1", s, True, H, changed, "duckdb x") == key) is same
    assert horizons(s, True, H)["policies"] == s + dt.timedelta(days=H) and horizons(s, False, H)["policies"] == s


def _unread(table: str) -> list[str]:
    """Contract columns of ``table`` the fingerprint leaves out (so the snapshot SQL must not read them)."""
    if table == "policies":
        read = {"issue_date", *POLICY_COLUMNS, *POLICY_DATES}
    else:
        when, cols = READ_COLUMNS[table]
        read = {when, *cols}
    return [c.name for c in CONTRACT[table].columns if c.name not in read and not c.personal]


def _scramble(s: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Other values of the column's own kind: permuted (a shuffle keeps the dtype and the allowed codes)."""
    return pd.Series(rng.permutation(s.to_numpy()), index=s.index)


@pytest.mark.parametrize("table", TABLES)
def test_columns_left_out_of_the_fingerprint_do_not_change_the_features(table: str, interim: Path,
                                                                     small_params: Params, tmp_path: Path) -> None:
    """Every column the fingerprint ignores is scrambled; the features of every snapshot stay the same.
    Were the snapshot SQL to read one, a change to it would not invalidate the cache: this fails first."""
    fp = small_params.features.model_copy(update={"n_train_snapshots": 3})
    plan = snapshot_plan(small_params.book.as_of, fp, H)
    unread = _unread(table)
    assert unread  # each table has columns the snapshots ignore (ids, current status, free text)
    con = duckdb.connect()
    register_tables(con, interim)
    want = features_frame(con, fp, plan, H).sort_values(["customer_id", "snapshot_date"], ignore_index=True)
    df = pd.read_parquet(interim / f"{table}.parquet")
    rng = np.random.default_rng(0)
    for col in unread:
        df[col] = _scramble(df[col], rng)
    folder = tmp_path / "interim"
    folder.mkdir()
    for name in TABLES:
        src = interim / f"{name}.parquet"
        if src.is_file():
            (folder / f"{name}.parquet").symlink_to(src) if name != table else df.to_parquet(folder / src.name)
    con2 = duckdb.connect()
    register_tables(con2, folder)
    got = features_frame(con2, fp, plan, H).sort_values(["customer_id", "snapshot_date"], ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
