"""Id lookups by Arrow's hash or DuckDB's join (``features.intake.keys``) against a dictionary: positions,
membership, non-text ids. Each property holds for both lookups (``JOIN_ROWS`` 0: every lookup is a join)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.intake import keys

TEXT = st.text(alphabet="ABC012", min_size=1, max_size=4)
HOLDERS = st.sampled_from(["str", "object", "string", "arrow", "chunked"])
JOIN = st.sampled_from([0, keys.JOIN_ROWS])  # the size from which DuckDB joins: always, or as configured


def _lookup(join_rows: int) -> mock._patch[int]:
    return mock.patch.object(keys, "JOIN_ROWS", join_rows)


def _as(values: list[str | None], holder: str) -> keys.Ids:
    """The same ids as each kind of holder the pipeline passes: pandas' str, object, StringDtype, Arrow arrays."""
    if holder == "arrow":
        return pa.array(values, type=pa.string())
    if holder == "chunked":
        half = len(values) // 2
        return pa.chunked_array([values[:half], values[half:]], type=pa.large_string())
    return pd.Series(values, dtype=holder)


@given(st.lists(TEXT, unique=True, max_size=30), st.lists(st.one_of(TEXT, st.none()), max_size=60), HOLDERS,
       HOLDERS, JOIN)
@settings(max_examples=120, deadline=None)
def test_positions_are_each_keys_place_among_the_ids_or_minus_one(ids: list[str], wanted: list[str | None],
                                                                  key_holder: str, id_holder: str,
                                                                  join_rows: int) -> None:
    """Absent and null keys are -1, whatever holds the keys and the ids (a null is never an id)."""
    with _lookup(join_rows):
        got = keys.positions(_as(wanted, key_holder), keys.prepared(_as(ids, id_holder)))
    where = {k: i for i, k in enumerate(ids)}
    assert got.dtype == np.int64
    assert got.tolist() == [where.get(k, -1) if k is not None else -1 for k in wanted]


@given(st.lists(TEXT, max_size=30), st.lists(st.one_of(TEXT, st.none()), max_size=60), HOLDERS, JOIN)
@settings(max_examples=120, deadline=None)
def test_member_allows_repeated_ids_and_never_counts_a_null(ids: list[str], wanted: list[str | None],
                                                            holder: str, join_rows: int) -> None:
    """Membership needs no unique ids (the references of a table into itself check against repeated keys)."""
    with _lookup(join_rows):
        got = keys.member(_as(wanted, holder), _as(ids, "str"))
    assert got.dtype == bool
    assert got.tolist() == [k is not None and k in set(ids) for k in wanted]


def test_a_join_over_repeated_ids_answers_as_arrow_does_with_the_first() -> None:
    """``positions`` promises unique ids; given repeats, the join sees a key matched twice and Arrow's lookup
    answers (the first occurrence), not whichever match the join returned last."""
    ids = pa.array(["a", "b", "a", "c", "b"], type=pa.large_string())
    wanted = pd.Series(["b", "a", "x", None, "c"], dtype="str")
    with _lookup(0):
        assert keys.positions(wanted, ids).tolist() == [1, 0, -1, -1, 3]


def test_large_lookups_join_and_agree_with_arrow() -> None:
    """From ``JOIN_ROWS`` ids (a validate chunk against a large book's customers) the join answers: the same
    positions and membership as Arrow's hash for text with nulls, absent keys and non-ASCII ids."""
    rng = np.random.default_rng(5)
    n = keys.JOIN_ROWS
    ids = pa.array([f"客户{i:07d}" if i % 7 else f"C{i}" for i in range(n)], type=pa.large_string())
    draw = rng.integers(0, 2 * n, n // 2)
    wanted = pa.array([None if d % 97 == 0 else (ids[int(d)].as_py() if d < n else f"X{d}") for d in draw],
                      type=pa.large_string())
    with mock.patch.object(keys, "_joined", wraps=keys._joined) as joined:
        at = keys.positions(wanted, ids)
    assert joined.call_count == 1
    with _lookup(10 * n):  # Arrow's hash
        assert at.tolist() == keys.positions(wanted, ids).tolist()
        among = keys.member(wanted, ids)
    assert keys.member(wanted, ids).tolist() == among.tolist()
    assert 0 < (at >= 0).mean() < 1 and (among == (at >= 0)).all()


def test_ids_that_are_not_text_take_pandas_lookup() -> None:
    """A user's integer keys cannot become Arrow text: the same answers through pandas."""
    ids, wanted = pd.Series([30, 10, 20]), pd.Series([20, 40, 30])
    assert keys.as_arrow(ids) is None
    assert keys.prepared(ids) is ids
    assert keys.positions(wanted, ids).tolist() == [2, -1, 0]
    assert keys.member(pd.Series([20, None, 40], dtype=object), ids).tolist() == [True, False, False]


def test_no_keys_give_empty_answers() -> None:
    ids = pd.Series(["a"], dtype="str")
    assert keys.positions(pd.Series([], dtype="str"), ids).shape == (0,)
    assert keys.member(pd.Series([], dtype="str"), ids).shape == (0,)


@given(st.lists(st.one_of(st.sampled_from(["P1", "P2", "P3", "宠爱"]), st.none()), max_size=40),
       st.sampled_from(["str", "object", "string"]),
       st.dictionaries(st.sampled_from(["P1", "P2", "宠爱", "other"]),
                       st.one_of(st.integers(0, 9), st.floats(0, 9)), max_size=4),
       st.booleans())
@settings(max_examples=100, deadline=None)
def test_mapped_is_series_map(values: list[str | None], dtype: str, mapping: dict[str, float], as_tuples: bool,
                              ) -> None:
    """The same values, dtype and index as ``Series.map``, with nulls, keys the mapping lacks and tuple values."""
    keys_ = pd.Series(values, dtype=dtype, index=range(100, 100 + len(values)))
    table: dict[str, object] = {k: (v, "x") for k, v in mapping.items()} if as_tuples else dict(mapping)
    pd.testing.assert_series_equal(keys.mapped(keys_, table), keys_.map(table))
