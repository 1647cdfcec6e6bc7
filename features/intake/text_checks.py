"""Two text rules of the contract in forms that run in Arrow's C++, with Python's meaning.

* **Control characters** (``CONTROL``, a NUL byte from a broken export): every one is an ASCII byte, and UTF-8
  never encodes another character with a byte below 0x80, so a scan of the column's bytes finds exactly the rows
  the regular expression does. RE2 over every text column was a tenth of ``validate`` at 1M customers.
* **Key patterns** (``^\\S+$``): pandas runs a pattern with ``\\s`` or ``\\S`` through Python's ``re``, one value at
  a time, because RE2's ``\\s`` misses ``\\x0b`` and Unicode spaces. ``arrow_pattern`` spells the same set out
  (``PYTHON_WHITESPACE``, tested against ``re`` over every code point), which pandas hands to Arrow; pandas still
  falls back to ``re`` when a value holds a newline, for ``$``'s meaning.

Pure: Series in, masks and pattern text out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_CONTROL_BYTE = np.zeros(256, bool)
_CONTROL_BYTE[[*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]] = True
# What Python's ``\s`` matches in a str pattern (every code point checked by tests/unit/features/test_text_checks.py)
PYTHON_WHITESPACE = "".join(map(chr, [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0,
                                      0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))


def utf8_bytes(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A text array's UTF-8 bytes end to end (no copy) and its ``len + 1`` offsets into them: value ``i`` is
    ``raw[off[i]:off[i + 1]]``. A null's bytes mean nothing: callers that care mask the nulls."""
    arr = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    _, offsets, data = arr.buffers()
    if len(arr) == 0 or data is None or offsets is None:
        return np.zeros(0, np.uint8), np.zeros(len(arr) + 1, np.int64)
    width = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else np.int32
    off = np.frombuffer(offsets, width)[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    return np.frombuffer(data, np.uint8)[off[0]: off[-1]], off - off[0]


def byte_rows(text: pa.Array | pa.ChunkedArray, wanted: np.ndarray) -> np.ndarray:
    """Whether each value's UTF-8 bytes hold a byte marked in ``wanted`` (256 booleans; null: False). Meant for
    ASCII bytes, which UTF-8 never uses inside another character's encoding."""
    raw, off = utf8_bytes(text)
    out = np.zeros(len(off) - 1, bool)
    out[np.searchsorted(off, np.flatnonzero(wanted[raw]), side="right") - 1] = True  # the value holding each hit
    if text.null_count:
        out &= text.is_valid().to_numpy(zero_copy_only=False)
    return out


def has_control(text: pd.Series) -> np.ndarray:
    """Whether each value holds a character of ``CONTROL`` (null: False), by a scan of its UTF-8 bytes."""
    return byte_rows(pa.array(text, type=pa.large_string(), from_pandas=True), _CONTROL_BYTE)


def arrow_pattern(regex: str) -> str:
    """``regex`` with ``\\S`` and ``\\s`` spelled as Python's whitespace set, so pandas matches it in Arrow with the
    same result. A pattern with a character class of its own is returned as it is (still right, through ``re``)."""
    if "[" in regex:
        return regex
    out, i = [], 0
    while i < len(regex):
        token = regex[i: i + 2] if regex[i] == "\\" else regex[i]  # a backslash and the next character are one token
        out.append({r"\S": "[^" + PYTHON_WHITESPACE + "]", r"\s": "[" + PYTHON_WHITESPACE + "]"}.get(token, token))
        i += len(token)
    return "".join(out)
