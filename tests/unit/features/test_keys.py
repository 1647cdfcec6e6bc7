"""Id lookups by Arrow's hash (``features.intake.keys``) against a dictionary: positions, membership, non-text ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.intake import keys

TEXT = st.text(alphabet="ABC012", min_size=1, max_size=4)
HOLDERS = st.sampled_from(["str", "object", "string", "arrow", "chunked"])


def _as(values: list[str | None], holder: str) -> keys.Ids:
    """The same ids as each kind of holder the pipeline passes: pandas' str, object, StringDtype, Arrow arrays."""
    if holder == "arrow":
        return pa.array(values, type=pa.string())
    if holder == "chunked":
        half = len(values) // 2
        return pa.chunked_array([values[:half], values[half:]], type=pa.large_string())
    return pd.Series(values, dtype=holder)


@given(st.lists(TEXT, unique=True, max_size=30), st.lists(st.one_of(TEXT, st.none()), max_size=60), HOLDERS,
       HOLDERS)
@settings(max_examples=80, deadline=None)
def test_positions_are_each_keys_place_among_the_ids_or_minus_one(ids: list[str], wanted: list[str | None],
                                                                  key_holder: str, id_holder: str) -> None:
    """Absent and null keys are -1, whatever holds the keys and the ids (a null is never an id)."""
    got = keys.positions(_as(wanted, key_holder), keys.prepared(_as(ids, id_holder)))
    where = {k: i for i, k in enumerate(ids)}
    assert got.dtype == np.int64
    assert got.tolist() == [where.get(k, -1) if k is not None else -1 for k in wanted]


@given(st.lists(TEXT, max_size=30), st.lists(st.one_of(TEXT, st.none()), max_size=60), HOLDERS)
@settings(max_examples=80, deadline=None)
def test_member_allows_repeated_ids_and_never_counts_a_null(ids: list[str], wanted: list[str | None],
                                                            holder: str) -> None:
    """Membership needs no unique ids (the references of a table into itself check against repeated keys)."""
    got = keys.member(_as(wanted, holder), _as(ids, "str"))
    assert got.dtype == bool
    assert got.tolist() == [k is not None and k in set(ids) for k in wanted]


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
