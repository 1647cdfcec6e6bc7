"""``"%.<P>g"`` for whole arrays (pipelines/gformat.py) gives the strings Python's ``%`` gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipelines import gformat


def _python(values: np.ndarray, p: int) -> list[str | None]:
    return [None if v != v else f"%.{p}g" % v for v in values.tolist()]


def _adversarial(n: int, p: int, seed: int = 0) -> np.ndarray:
    """Values where rounding or notation is easy to get wrong, among ordinary ones."""
    rng = np.random.default_rng(seed)
    powers = 10.0 ** rng.integers(-30, 30, n)
    halves = rng.integers(10**p, 10 ** (p + 1), n) // 10 * 10 + 5  # a 5 just past the p digits kept: the double
    halves = np.concatenate([halves / 10.0 ** rng.integers(0, 23, n), halves * 10.0 ** rng.integers(0, 10, n)])
    return np.concatenate([
        rng.lognormal(0, 20, n) * rng.choice([-1, 1], n),  # every magnitude, both signs
        rng.random(n), rng.normal(0, 1e4, n),  # probabilities and values, as a score file holds
        halves, (rng.integers(0, 10**13, n) + 0.5) / 10.0 ** rng.integers(0, 16, n),  # is a little above or below
        powers, np.nextafter(powers, np.inf), np.nextafter(powers, -np.inf),  # the exponent's edges
        rng.integers(-10**13, 10**13, n).astype(float),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 9.9999999995,
         9.9999999996, 99999.999995, 9.999999999999e-5, 1e-4, 1e-5, 1e10, 9999999999.5, 9999999999.4999, 0.5],
    ])


@pytest.mark.parametrize("p", [1, 3, 6, 10, 12])
def test_adversarial_values_are_written_as_python_writes_them(p: int) -> None:
    values = _adversarial(20_000, p, seed=p)
    assert gformat.format_g(values, p).to_pylist() == _python(values, p)


@settings(max_examples=100, deadline=None)
@given(values=arrays(np.float64, st.integers(0, 40)), p=st.integers(1, gformat.MAX_PRECISION))
def test_any_floats_are_written_as_python_writes_them(values: np.ndarray, p: int) -> None:
    assert gformat.format_g(values, p).to_pylist() == _python(values, p)


def test_ordinary_values_do_not_go_through_python() -> None:
    """The point of the module: a score file's values are written without Python (else the equality above
    would hold trivially)."""
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.random(10_000), rng.lognormal(7, 2, 10_000), -rng.lognormal(0, 1, 10_000),
                             np.zeros(1000), -rng.random(1000) * 1e-6])  # zeros and tiny uplifts (e-07)
    assert gformat.plan(values, 10)[3].mean() > 0.99


@pytest.mark.parametrize(("fmt", "expected"), [("%.10g", 10), ("%.1g", 1), ("%.12g", 12), ("%.13g", None),
                                               ("%.0g", None), ("%.6f", None), ("%g", None), ("x%.10g", None)])
def test_only_the_formats_it_can_write_are_taken(fmt: str, expected: int | None) -> None:
    assert gformat.precision(fmt) == expected
