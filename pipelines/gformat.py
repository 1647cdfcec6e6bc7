"""``"%.<P>g" % value`` for a whole float64 array at once, byte for byte, in NumPy and one Arrow cast.

The score file's floats are written ``%.10g``. Through Python's ``%`` that is a call and a Python string per
value: at 5M customers several seconds per float column, most of the CSV writer's time (docs/benchmarks.md).
Here each value is scaled by an exact power of ten and rounded to its ``P`` significant digits; that rounded
decimal's nearest double (or its mantissa's, followed by ``e±XX``) is written by Arrow's shortest round-trip
cast. The scaling is one correctly rounded multiplication or division, and rounding is monotonic while every
``n + 0.5`` is a double here, so the rounded product lies on the same side of a half as the exact one, or on it:
those ties go to Python's ``%`` as before, with non-finite, subnormal, tiny or far-out values. Every string is
the one ``%`` gives; a test compares the two on adversarial values (ties, powers of ten and their neighbours, both
notations, several ``P``), and fails if the ties are not sent to Python.

``%g``'s rules: round to ``P`` significant digits; with ``X`` the decimal exponent after rounding, fixed notation
if ``-4 <= X < P``, else ``d.ddde±XX``; trailing zeros of the fraction dropped, and the point if nothing follows.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_PRECISION = 12  # halves exact in float64 (_round) and decimals unique in a double (_assemble)
POW10 = np.array([float(f"1e{k}") for k in range(23)])  # exact in binary64 up to 1e22
ARROW_FIXED_BELOW = 10  # Arrow's cast writes exponents -4..9 in fixed notation (beyond: %g's, not Arrow's)
MAX_EXPONENT = 99
SUFFIXES = pa.array([""] + [f"e{x:+03d}" for x in range(-MAX_EXPONENT, MAX_EXPONENT + 1)])  # e-05, e+10
_G_FORMAT = re.compile(r"%\.(\d+)g")


def precision(float_format: str) -> int | None:
    """``P`` of a ``"%.<P>g"`` format this module can write, else None (the caller formats in Python)."""
    match = _G_FORMAT.fullmatch(float_format)
    return int(match.group(1)) if match and 1 <= int(match.group(1)) <= MAX_PRECISION else None


def format_g(values: np.ndarray, p: int) -> pa.Array:
    """``"%.<p>g" % v`` for each float64 ``v``, as an Arrow string array; NaN gives null (an empty CSV cell)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    digits, x, fixed, fast = plan(values, p)
    text = _assemble(values, digits, x, fixed, p, null=~fast)  # NaN, and the values left to Python, null here
    slow = np.flatnonzero(~fast & ~np.isnan(values))
    if not len(slow):
        return text
    # Python's strings for the rest, taken into their rows
    pieces = pa.concat_arrays([text, pa.array([f"%.{p}g" % v for v in values[slow].tolist()], type=pa.string())])
    where = np.arange(len(values))
    where[slow] = len(values) + np.arange(len(slow))
    return pc.take(pieces, pa.array(where))


def plan(values: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_round``'s digits and exponent, whether ``%g`` writes fixed notation, and which values are written here
    (zeros among them; not those in fixed notation past Arrow's)."""
    digits, x, fast = _round(values, p)
    zero = values == 0
    fixed = zero | ((x >= -4) & (x < p))
    return digits, x, fixed, (fast & (~fixed | (x < ARROW_FIXED_BELOW))) | zero


def _round(values: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's ``p`` significant digits as an integer in ``[10**(p-1), 10**p)`` (exact in float64), its
    decimal exponent after rounding, and whether both are certain (else the value goes to Python)."""
    a = np.abs(values)
    usable = np.isfinite(a) & (a >= np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log10(np.where(usable, a, 1.0))).astype(np.int64)
    far = (np.abs(p - 1 - e) > 22) | (np.abs(e) > MAX_EXPONENT)  # past one exact power of ten, or the suffixes
    usable &= ~far
    e[far] = p - 1
    a = np.where(usable, a, 0.0)  # zeros give digits 0; the rest of the unusable go to Python
    scaled = _scale(a, e, p)
    digits = np.rint(scaled)
    certain = np.abs(scaled - digits) != 0.5
    off = np.flatnonzero(usable & ((digits < 10 ** (p - 1)) | (digits >= 10 ** p)))  # log10's floor was off by one
    if len(off):  # near a power of ten, or the rounding carried into another digit: again with the exponent moved
        e[off] += np.where(digits[off] >= 10 ** p, 1, -1)
        scaled[off] = _scale(a[off], e[off], p)
        digits[off] = np.rint(scaled[off])
        certain[off] &= np.abs(scaled[off] - digits[off]) != 0.5
    fast = (usable & certain & (np.abs(p - 1 - e) <= 22) & (np.abs(e) <= MAX_EXPONENT)
            & (digits >= 10 ** (p - 1)) & (digits < 10 ** p))
    return digits, e, fast


def _scale(a: np.ndarray, e: np.ndarray, p: int) -> np.ndarray:
    """``a * 10**(p - 1 - e)`` in one rounding: a multiplication or division by an exact power of ten."""
    k = p - 1 - e
    with np.errstate(over="ignore", invalid="ignore"):
        out = a * POW10[np.clip(k, 0, 22)]
        down = np.flatnonzero(k < 0)  # values of 10**P and more: rare in a score file
        out[down] = a[down] / POW10[np.clip(-k[down], 0, 22)]
    return out


def _assemble(values: np.ndarray, digits: np.ndarray, x: np.ndarray, fixed: np.ndarray, p: int,
              null: np.ndarray) -> pa.Array:
    """The text of ``±digits * 10**(x - p + 1)`` (the sign of ``values``), null where ``null``. Fixed notation:
    that decimal's nearest double (one multiplication or division by an exact power of ten) written by Arrow's
    shortest round-trip cast; a decimal of at most 15 significant digits is the only one of its length or shorter
    that maps to its double, so the cast writes ``digits`` without their trailing zeros. Exponent notation: the
    mantissa ``d.ddd`` so written, then ``e±XX``."""
    k = np.clip(np.where(fixed, x - p + 1, 1 - p), -22, 22)
    shown = digits * POW10[np.maximum(k, 0)]
    down = np.flatnonzero(k < 0)
    shown[down] = digits[down] / POW10[-k[down]]
    text = pc.cast(pa.array(np.copysign(shown, values), mask=null), pa.string())
    if fixed[~null].all():
        return text
    suffix = pc.take(SUFFIXES, pa.array(np.where(fixed, 0, np.clip(x, -MAX_EXPONENT, MAX_EXPONENT) + MAX_EXPONENT + 1)))
    return pc.binary_join_element_wise(text, suffix, "")  # a null stays null
