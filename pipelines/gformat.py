"""``"%.<P>g" % value`` for a whole float64 array at once, byte for byte, in NumPy and one Arrow cast.

The score file's floats are written ``%.10g``. Through Python's ``%`` that is a call and a Python string per
value: at 5M customers several seconds per float column, most of the CSV writer's time (docs/benchmarks.md).
Here each value is scaled by an exact power of ten and rounded to its ``P`` significant digits; that rounded
decimal's nearest double is written by Arrow's shortest round-trip cast, which for those exponents uses ``%g``'s
notation. The scaling is one floating-point rounding, so the digits are right unless the exact product lies
within that rounding's error of a half: a margin sends those values, and zeros, non-finite, subnormal, tiny or
far-out ones, to Python's ``%`` as before. Every string is the one ``%`` gives; a test compares the two on
adversarial values (halves, powers of ten and their neighbours, both notations, several ``P``).

``%g``'s rules: round to ``P`` significant digits; with ``X`` the decimal exponent after rounding, fixed notation
if ``-4 <= X < P``, else ``d.ddde±XX``; trailing zeros of the fraction dropped, and the point if nothing follows.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_PRECISION = 12  # the scaling's error (half an ulp of 10**P) stays far below MARGIN, and P <= 15 (_assemble)
MARGIN = 1e-3  # a product this close to a half is formatted by Python instead
POW10 = np.array([float(f"1e{k}") for k in range(23)])  # exact in binary64 up to 1e22
ARROW_FIXED_BELOW = 10  # Arrow writes exponents -4..9 in fixed notation, as %g does for P = 10
_G_FORMAT = re.compile(r"%\.(\d+)g")


def precision(float_format: str) -> int | None:
    """``P`` of a ``"%.<P>g"`` format this module can write, else None (the caller formats in Python)."""
    match = _G_FORMAT.fullmatch(float_format)
    return int(match.group(1)) if match and 1 <= int(match.group(1)) <= MAX_PRECISION else None


def format_g(values: np.ndarray, p: int) -> pa.Array:
    """``"%.<p>g" % v`` for each float64 ``v``, as an Arrow string array; NaN gives null (an empty CSV cell)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    digits, exponent, fast = _round(values, p)
    text = _assemble(digits[fast], exponent[fast], np.signbit(values[fast]), p)
    if fast.all():
        return text
    slow = np.flatnonzero(~fast & ~np.isnan(values))
    # every row's string: the fast ones, then Python's for the rest, then one null for NaN, taken in row order
    pieces = pa.concat_arrays([text, pa.array([f"%.{p}g" % v for v in values[slow].tolist()], type=pa.string()),
                               pa.nulls(1, pa.string())])
    where = np.full(len(values), len(pieces) - 1, dtype=np.int64)
    where[fast] = np.arange(len(text))
    where[slow] = len(text) + np.arange(len(slow))
    return pc.take(pieces, pa.array(where))


def _round(values: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's ``p`` significant digits as an integer in ``[10**(p-1), 10**p)``, its decimal exponent after
    rounding, and whether both are certain (else the value goes to Python)."""
    a = np.abs(values)
    usable = np.isfinite(a) & (a >= np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log10(np.where(usable, a, 1.0))).astype(np.int64)
    scaled = _scale(a, e, p)
    lo, hi = float(10 ** (p - 1)) - 0.5, float(10 ** p) - 0.5
    e = e + (scaled >= hi) - (scaled < lo)  # log10's floor is off by one near a power of ten, or rounding carries
    first = scaled  # near a half, the carry (hi, lo) is as uncertain as the rounding
    scaled = _scale(a, e, p)
    digits = np.rint(scaled)
    with np.errstate(invalid="ignore"):
        certain = (np.abs(scaled - np.floor(scaled) - 0.5) > MARGIN) & (np.abs(first - np.floor(first) - 0.5) > MARGIN)
    fast = (usable & (np.abs(p - 1 - e) <= 22) & (e >= -4) & ((e < p) == (e < ARROW_FIXED_BELOW)) & certain
            & (digits >= 10 ** (p - 1)) & (digits < 10 ** p))
    return digits, e, fast  # digits: integers, exact in float64 (below 2**53)


def _scale(a: np.ndarray, e: np.ndarray, p: int) -> np.ndarray:
    """``a * 10**(p - 1 - e)`` in one rounding: a multiplication or division by an exact power of ten."""
    k = p - 1 - e
    power = POW10[np.clip(np.abs(k), 0, 22)]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(k >= 0, a * power, a / power)


def _assemble(digits: np.ndarray, x: np.ndarray, negative: np.ndarray, p: int) -> pa.Array:
    """The text of ``±digits * 10**(x - p + 1)``: that decimal's nearest double (one multiplication or division by
    an exact power of ten), written by Arrow's shortest round-trip cast. A decimal of at most 15 significant digits
    is the only one of its length or shorter that maps to its double, so the cast writes ``digits`` without their
    trailing zeros, and for exponents from -4 on in ``%g``'s notation (``_round`` sends the others to Python)."""
    k = x - p + 1
    power = POW10[np.abs(k)]
    value = np.where(k >= 0, digits * power, digits / power)
    return pc.cast(pa.array(np.where(negative, -value, value)), pa.string())
