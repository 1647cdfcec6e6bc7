"""Growable columnar stores the simulated world appends to day by day (split out of features.simulator.world)."""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------------------
# Growable columnar stores
# ---------------------------------------------------------------------------------------------
class Store:
    """Columnar append-only store of numpy arrays (contacts, policies, claims)."""

    def __init__(self, dtypes: dict[str, type | str]) -> None:
        self.dtypes = dtypes
        self.chunks: dict[str, list[np.ndarray]] = {k: [] for k in dtypes}

    def add(self, **cols: np.ndarray) -> None:
        n = {len(v) for v in cols.values()}
        assert len(n) == 1 and set(cols) == set(self.dtypes), (n, set(cols) ^ set(self.dtypes))
        if n.pop() == 0:
            return
        for k, v in cols.items():
            self.chunks[k].append(np.asarray(v, dtype=self.dtypes[k]))

    def frame(self) -> dict[str, np.ndarray]:
        return {
            k: (np.concatenate(v) if v else np.empty(0, dtype=self.dtypes[k])) for k, v in self.chunks.items()
        }


class Policies:
    """In-memory policy table with mutable status (the simulation's book of business)."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cust = np.zeros(capacity, np.int64)
        self.line = np.zeros(capacity, np.int8)
        self.issue = np.zeros(capacity, np.int32)  # day index (may be negative: before the window)
        self.premium = np.zeros(capacity, np.float64)
        self.sum = np.zeros(capacity, np.float64)
        self.mode = np.zeros(capacity, np.int8)
        self.maturity = np.full(capacity, np.iinfo(np.int32).max, np.int32)
        self.status = np.zeros(capacity, np.int8)  # 0 in_force 1 lapsed 2 surrendered 3 matured
        self.end = np.full(capacity, -1, np.int32)  # day the status changed
        self.bad_claim = np.zeros(capacity, np.float32)

    def add(self, cust: np.ndarray, line: np.ndarray, issue: np.ndarray, premium: np.ndarray,
            sum_: np.ndarray, mode: np.ndarray, maturity: np.ndarray) -> np.ndarray:
        k = len(cust)
        if self.n + k > len(self.cust):
            self._grow(max(self.n + k, 2 * len(self.cust)))
        sl = slice(self.n, self.n + k)
        self.cust[sl], self.line[sl], self.issue[sl] = cust, line, issue
        self.premium[sl], self.sum[sl], self.mode[sl], self.maturity[sl] = premium, sum_, mode, maturity
        self.status[sl], self.end[sl], self.bad_claim[sl] = 0, -1, 0
        self.n += k
        return np.arange(sl.start, sl.stop)

    def _grow(self, cap: int) -> None:
        for name in ("cust", "line", "issue", "premium", "sum", "mode", "maturity", "status", "end", "bad_claim"):
            old = getattr(self, name)
            new = np.empty(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)


class Touches:
    """Today's touches in the order they are decided (the outcome draws read them in that order)."""

    def __init__(self) -> None:
        self.cust: list[np.ndarray] = []
        self.ch: list[np.ndarray] = []
        self.purp: list[np.ndarray] = []
        self.camp: list[np.ndarray] = []
        self.hold: list[np.ndarray] = []
        self.inb: list[np.ndarray] = []

    def add(self, c: np.ndarray, ch: np.ndarray | int, purpose: int, camp: int = -1, hold: bool = False,
            inbound: bool = False) -> None:
        k = len(c)
        if k == 0:
            return
        self.cust.append(c)
        self.ch.append(np.broadcast_to(np.asarray(ch, np.int8), (k,)).copy())
        self.purp.append(np.full(k, purpose, np.int8))
        self.camp.append(np.full(k, camp, np.int32))
        self.hold.append(np.full(k, hold, bool))
        self.inb.append(np.full(k, inbound, bool))
