"""The simulated world at the end of its history, as plain arrays: what ``generate`` hands the ``truth`` stage.

The truth runs forward from the world ``generate`` simulated. Re-simulating the history in the truth stage cost
a second core about 12 CPU-seconds on the default book, while ``make run`` is CPU-bound on 2 cores
(docs/benchmarks.md), so ``generate`` saves the world's state instead: every NumPy array of the world and of its
policy table, in NumPy's own ``.npz`` format, not a pickle. What is not an array is rebuilt from the
parameters: ``World.__init__`` draws the same customers and campaign plan from the same seed, and the arrays
then overwrite everything the history moved. The contacts and claims recorded are not kept: the truth records
nothing. ``tests/unit/features/test_synthetic.py`` checks the truth from a saved state equals the truth from the
history, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from features.simulator.params import SyntheticParams
from features.simulator.world import World

WORLD, POLICIES = "world.", "policies."


def world_arrays(w: World) -> dict[str, np.ndarray]:
    """Every array of ``w`` and of its policy table, and the table's row count, keyed by attribute."""
    out = {WORLD + k: v for k, v in vars(w).items() if isinstance(v, np.ndarray)}
    out |= {POLICIES + k: v for k, v in vars(w.pol).items() if isinstance(v, np.ndarray)}
    out[POLICIES + "n"] = np.asarray(w.pol.n, np.int64)
    return out


def world_from_arrays(p: SyntheticParams, arrays: Mapping[str, np.ndarray]) -> World:
    """The world ``world_arrays`` saved, for the parameters it was simulated with.

    Raises ``ValueError`` when the arrays are not such a world's (another book size, or a simulator whose
    state has other fields): the truth would otherwise run forward from a world the tables did not come from.
    """
    w = World(p, np.random.default_rng(p.seed))
    expected = set(world_arrays(w))
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ValueError(f"not the simulator's saved world: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in arrays.items():
        owner, name = (w.pol, key[len(POLICIES):]) if key.startswith(POLICIES) else (w, key[len(WORLD):])
        if name == "n":
            owner.n = int(value)
            continue
        current = getattr(owner, name)
        if value.dtype != current.dtype or (owner is w and value.shape != current.shape):
            raise ValueError(f"saved world's {key} is {value.dtype}{list(value.shape)}, this book's "
                             f"{current.dtype}{list(current.shape)}: another book size or simulator version")
        setattr(owner, name, np.array(value))  # writable: the truth's runs move the state
    return w
