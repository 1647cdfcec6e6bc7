"""One simulated day's random draws, made once and served to every truth scenario that asks for the same ones.

The truth's runs use common random numbers: replicate r draws from the generator seeded ``[seed, stream, r, d]``
on day d in every scenario (``features.simulator.book._run``). Outside business as usual, the scenarios ask
for the same draws in the same order for most of a day: each customer's chance of an inbound request
(``random(n)``), each policy's chance of a claim (``random`` over every policy row), the claims' outcomes, and on
every day but the first the outcome draws of the same inbound and claim-service touches. Drawing those once per
replicate and day, not once per scenario, serves the same numbers: a draw depends only on the generator's state
and its arguments, so while a scenario has asked for exactly what the first one asked for, in the same order, the
generator would be in the same state and return the same values. At its first different request (the channel
scenarios' touches on day 0; a different number of quotes) the scenario resumes from the generator's state after
the last request they shared, and draws for itself from then on.

Pure: seeds in, NumPy arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# what ``World.step`` draws with in truth mode (``realise=False``); any other method is not served
METHODS = ("random", "choice", "integers", "lognormal", "normal")
Key = tuple[object, ...]


def _key(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key | None:
    """A request's identity: the method, its arguments and their names, or None when an argument is an array
    (never shared: comparing arrays would cost what drawing does)."""
    values: list[object] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, np.ndarray):
            return None
        values.append(tuple(value) if isinstance(value, list) else value)
    return (method, *values, *kwargs)


class DayDraws:
    """The draws one replicate makes on one day, in the order of the first scenario to ask for them."""

    def __init__(self, seed: Sequence[int]) -> None:
        self.seed = list(seed)
        self.calls: list[tuple[Key | None, Any, Any]] = []  # (request, values, generator state after)


class SharedGenerator:
    """A stand-in for ``np.random.Generator`` in ``World.step``: serves ``day``'s recorded draws while the requests
    match them, draws and records the day's next ones once past the record, and draws alone after a request that
    differs. Scenarios of a replicate run one after another, so only the one running adds to the record.

    Values served are read-only arrays: a caller that wrote into one would change what the next scenario is served.
    """

    def __init__(self, day: DayDraws) -> None:
        self._day = day
        self._shared = 0  # recorded calls this scenario has shared so far
        self._own: np.random.Generator | None = None  # drawing alone, after a request that differed
        self._recording: np.random.Generator | None = None  # past the record: drawing for the scenarios after

    def __getattr__(self, method: str) -> Any:
        if method not in METHODS:
            raise AttributeError(f"SharedGenerator serves {', '.join(METHODS)}, not {method!r}")
        return lambda *args, **kwargs: self._draw(method, args, kwargs)

    def _draw(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._own is not None:
            return getattr(self._own, method)(*args, **kwargs)
        key, calls = _key(method, args, kwargs), self._day.calls
        if self._shared < len(calls):
            recorded_key, values, _ = calls[self._shared]
            if key is not None and recorded_key == key:
                self._shared += 1
                return values
            self._own = self._resume()
            return getattr(self._own, method)(*args, **kwargs)
        if self._recording is None:
            self._recording = self._resume()
        values = _read_only(getattr(self._recording, method)(*args, **kwargs))
        calls.append((key, values, self._recording.bit_generator.state))
        self._shared += 1
        return values

    def _resume(self) -> np.random.Generator:
        """A generator in the state after the calls shared with the record."""
        if self._shared == 0:
            return np.random.default_rng(self._day.seed)
        bit_generator = np.random.PCG64()
        bit_generator.state = self._day.calls[self._shared - 1][2]
        return np.random.Generator(bit_generator)


def _read_only(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value
