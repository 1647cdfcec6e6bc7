"""The pure parts of validating a table in chunks (features/intake/chunked.py); the whole-versus-chunked equality is
in tests/unit/pipelines/test_validate_chunks.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.intake.chunked import NO_MONTH, PASSED, order_sql, spill_groups
from features.intake.contract import TABLES


def _rows(stamps: list[int | None], passed: list[bool]) -> pd.DataFrame:
    ts = pd.Series([pd.NaT if s is None else pd.Timestamp("2023-01-01") + pd.Timedelta(days=s) for s in stamps],
                   dtype="datetime64[us]")
    return pd.DataFrame({PASSED: passed, "contact_ts": ts})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 900)), st.booleans()), max_size=60))
def test_spill_groups_split_the_pending_rows_by_month_in_the_contracts_order(rows: list[tuple[int | None, bool]],
                                                                             ) -> None:
    df = _rows([s for s, _ in rows], [p for _, p in rows])
    groups = spill_groups(df, TABLES["contacts"])
    months = [m for m, _ in groups]
    assert months == sorted(months) and len(set(months)) == len(months)  # each month once, in order, none last
    every = np.concatenate([at for _, at in groups])
    assert sorted(every.tolist()) == np.flatnonzero(df[PASSED]).tolist()  # exactly the pending rows, once each
    ts = df["contact_ts"]
    for month, at in groups:
        assert (np.diff(at) > 0).all()  # source order within a group: the sort's tie-breaker
        if month == NO_MONTH:
            assert ts.iloc[at].isna().all()
        else:
            assert ((ts.iloc[at].dt.year - 1970) * 12 + ts.iloc[at].dt.month - 1 == month).all()
    assert groups  # a chunk with no pending row still names a group (its empty file keeps the folder scannable)


def test_a_table_not_ordered_by_month_is_one_group() -> None:
    policies = TABLES["policies"]
    df = pd.DataFrame({PASSED: [True, False, True]})
    [(group, at)] = spill_groups(df, policies)
    assert group == 0 and at.tolist() == [0, 2]
    assert order_sql(policies, within_group=True) == order_sql(policies)


def test_the_order_within_a_month_group_drops_only_the_month() -> None:
    contacts = TABLES["contacts"]
    whole, within = order_sql(contacts), order_sql(contacts, within_group=True)
    assert whole.startswith("date_trunc('month'") and whole.endswith(within)
    assert "date_trunc" not in within
