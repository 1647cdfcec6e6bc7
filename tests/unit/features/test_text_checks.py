"""The contract's text rules in Arrow (``features.intake.text_checks``) against Python's ``re``, their meaning."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.intake.text_checks import CONTROL, PYTHON_WHITESPACE, arrow_pattern, has_control

# ASCII controls and spaces, the Unicode spaces, a newline, CJK and an emoji: every byte length of UTF-8
ALPHABET = st.sampled_from(["a", "Z", "0", "-", "\x00", "\x07", "\t", "\n", "\x0b", "\x1f", "\x7f", "\x85", " ",
                            "\xa0", "\u2003", "\u3000", "客", "户", "\U0001f600"])
VALUES = st.lists(st.one_of(st.none(), st.text(ALPHABET, max_size=6)), max_size=40)


def test_the_whitespace_set_is_what_python_s_backslash_s_matches() -> None:
    every = "".join(chr(c) for c in range(0x110000) if re.fullmatch(r"\s", chr(c)))
    assert every == PYTHON_WHITESPACE


@given(VALUES, st.sampled_from(["string", "str", "object"]), st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_has_control_finds_the_rows_the_regular_expression_does(values: list[str | None], dtype: str,
                                                                 skip: int) -> None:
    """Any holder of the text, with nulls, multi-byte characters and a sliced (offset) Arrow array."""
    text = pd.Series(values, dtype=dtype).iloc[skip:]
    expected = [isinstance(v, str) and re.search(CONTROL, v) is not None for v in text.tolist()]
    assert has_control(text.astype("string")).tolist() == expected


def test_has_control_reads_a_text_column_held_in_several_arrow_chunks() -> None:
    chunks = pa.chunked_array([["ok", "bad\x00"], [None, "fine", "\x1f"]], type=pa.large_string())
    text = pd.Series(pd.arrays.ArrowExtensionArray(chunks))
    assert has_control(text).tolist() == [False, True, False, False, True]


@given(VALUES, st.sampled_from([r"^\S+$", r"\s", r"^a\S*", r"x\\S", r"^[^\s]+$"]))
@settings(max_examples=150, deadline=None)
def test_arrow_pattern_matches_the_values_python_s_pattern_does(values: list[str | None], regex: str) -> None:
    """pandas with the spelled-out pattern (in Arrow) agrees with Python's ``re`` on the contract's pattern,
    a value ending in a newline included (``$`` matches before it in Python)."""
    text = pd.Series(values, dtype="string")
    expected = [v is not None and re.match(regex, v) is not None for v in values]
    assert text.str.match(arrow_pattern(regex), na=False).astype(bool).tolist() == expected


def test_arrow_pattern_takes_the_arrow_path_for_the_key_pattern() -> None:
    """The point of the spelling: nothing in it sends pandas to Python's ``re`` (no \\s, \\S or \\u escapes)."""
    spelled = arrow_pattern(r"^\S+$")
    assert r"\S" not in spelled and r"\s" not in spelled and "\\u" not in spelled
    assert spelled.startswith("^[^") and spelled.endswith("]+$")
    assert arrow_pattern(r"^[^\s]+$") == r"^[^\s]+$"  # a class of its own is left to ``re``
