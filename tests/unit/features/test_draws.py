"""The truth's shared draws (features/simulator/draws.py) are the numbers each scenario's own generator would draw."""

from __future__ import annotations

import numpy as np
import pytest

from features.simulator.draws import DayDraws, SharedGenerator

SEED = [20261123, 7, 3, 41]


def _draws(gen: object, steps: list[tuple[str, tuple, dict]]) -> list[np.ndarray]:
    return [getattr(gen, method)(*args, **kwargs) for method, args, kwargs in steps]


FIRST = [("random", (50,), {}), ("choice", ([1, 3, 5], 7), {"p": [0.2, 0.3, 0.5]}), ("integers", (2, 8, 6), {}),
         ("lognormal", (8.2, 1.0, 4), {})]


def test_a_scenario_is_served_what_its_own_generator_would_draw() -> None:
    day = DayDraws(SEED)
    first = _draws(SharedGenerator(day), FIRST)
    for got, want in zip(first, _draws(np.random.default_rng(SEED), FIRST), strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(day.calls) == len(FIRST)
    # the next scenario asks for the same draws: served the recorded arrays themselves, not drawn again
    again = _draws(SharedGenerator(day), FIRST)
    assert all(a is b for a, b in zip(again, first, strict=True))
    with pytest.raises(ValueError, match="read-only"):
        first[0][0] = 1.0


@pytest.mark.parametrize("differs_at", [0, 1, 3])
def test_a_scenario_that_asks_for_other_draws_goes_on_from_the_shared_state(differs_at: int) -> None:
    """From its first different request on (another size, other arguments, an array argument), the scenario draws
    what its own generator would have drawn after the requests it shared."""
    day = DayDraws(SEED)
    _draws(SharedGenerator(day), FIRST)
    other = [*FIRST[:differs_at], ("random", (9,), {}), ("normal", (np.zeros(3), 1.0), {}), *FIRST[differs_at:]]
    got = _draws(SharedGenerator(day), other)
    for g, w in zip(got, _draws(np.random.default_rng(SEED), other), strict=True):
        np.testing.assert_array_equal(g, w)
    assert len(day.calls) == len(FIRST)  # a scenario that went its own way records nothing


def test_a_scenario_past_the_record_records_for_the_next() -> None:
    day = DayDraws(SEED)
    _draws(SharedGenerator(day), FIRST[:2])
    longer = _draws(SharedGenerator(day), FIRST)  # shares two, draws and records two more
    assert len(day.calls) == len(FIRST)
    for g, w in zip(longer, _draws(np.random.default_rng(SEED), FIRST), strict=True):
        np.testing.assert_array_equal(g, w)
    assert _draws(SharedGenerator(day), FIRST)[3] is longer[3]


def test_only_the_methods_the_day_draws_with_are_served() -> None:
    with pytest.raises(AttributeError, match="poisson"):
        SharedGenerator(DayDraws(SEED)).poisson(1.0, 3)
