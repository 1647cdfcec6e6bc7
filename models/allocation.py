"""Capacity-optimal contact allocation: at most one channel (or none) per customer, most total value.

The week's problem: customers ``i``, channels ``c``, net incremental value ``v[i, c]`` (CNY; ``-inf`` where a
touch is not allowed: consent, caps, interval, tier). Batch channels (SMS, WeChat, email, letter) have no
capacity; agent-led channels (phone, visit, event) have a weekly capacity, overall and optionally per agent.

    maximise  sum v[i, c] x[i, c]
    s.t.      sum_c x[i, c] <= 1                        (one touch per customer and week)
              sum_i x[i, c] <= cap[c]                   (agent-led channel capacity)
              sum_{i of agent a} x[i, c] <= cap[a, c]   (per agent, when agents are known)

Customer rows form one laminar family of constraints and the nested capacity sets another, so the matrix is
totally unimodular and the LP relaxation has integral vertices (a bipartite b-matching). Two solvers:

* ``solve_exact``: SciPy's HiGHS (dual simplex via ``scipy.optimize.linprog``; ``milp`` if a vertex were ever
  fractional) on the reduced problem, for books that fit;
* ``solve_prices``: per-channel (and per agent-channel) prices, each set in turn to the exact value that clears
  its capacity given the others (a Gauss-Seidel sweep on the LP dual); prices only rise, so the sweep converges,
  and its fixed point satisfies complementary slackness, i.e. it is optimal. O(customers x channels) per sweep.

Both first collapse the batch channels into each customer's best batch option ``b[i] = max(0, best batch
value)``: a capacity channel is then worth ``v[i, c] - b[i]`` over the fallback, and only customers for whom that
is positive enter the capacity problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

log = logging.getLogger(__name__)
NONE = -1  # "no touch" in a choice vector


@dataclass(frozen=True)
class Problem:
    """One planning week. ``value`` is (customers x channels), ``-inf`` where a touch is not allowed."""

    value: np.ndarray
    channels: tuple[str, ...]
    capacity: dict[str, int]                      # agent-led channels only; others are unlimited
    agent: np.ndarray | None = None               # agent index per customer, -1 without one
    agent_capacity: dict[str, int] = field(default_factory=dict)  # per agent and channel

    def __post_init__(self) -> None:
        if self.value.ndim != 2 or self.value.shape[1] != len(self.channels):
            raise ValueError(f"value must be (customers x {len(self.channels)} channels), got {self.value.shape}")
        unknown = set(self.capacity) - set(self.channels)
        if unknown:
            raise ValueError(f"capacity names channels that are not planned: {sorted(unknown)}")
        if np.isnan(self.value).any():
            raise ValueError("value has NaN: use -inf for a touch that is not allowed")

    @property
    def capped(self) -> list[int]:
        return [j for j, c in enumerate(self.channels) if c in self.capacity]

    @property
    def batch(self) -> list[int]:
        return [j for j, c in enumerate(self.channels) if c not in self.capacity]

    def agent_caps(self) -> dict[int, int]:
        """Per-agent capacity by capped column index (empty when agents are not planned)."""
        if self.agent is None:
            return {}
        return {j: int(self.agent_capacity[c]) for j, c in enumerate(self.channels) if c in self.agent_capacity}


def _batch_fallback(p: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's best batch channel (index, or NONE) and its value floored at 0 (no touch)."""
    n = p.value.shape[0]
    if not p.batch:
        return np.full(n, NONE), np.zeros(n)
    sub = p.value[:, p.batch]
    best = np.argmax(sub, axis=1)
    val = sub[np.arange(n), best]
    take = val > 0
    return np.where(take, np.asarray(p.batch)[best], NONE), np.where(take, val, 0.0)


def objective(p: Problem, choice: np.ndarray) -> float:
    """Total value of a choice vector (NONE = no touch)."""
    rows = np.flatnonzero(choice != NONE)
    return float(p.value[rows, choice[rows]].sum())


def check(p: Problem, choice: np.ndarray) -> list[str]:
    """Every constraint the choice breaks, as messages (empty: feasible)."""
    errors = []
    rows = np.flatnonzero(choice != NONE)
    if not np.isfinite(p.value[rows, choice[rows]]).all():
        errors.append("a touch that is not allowed was chosen")
    for j in p.capped:
        used = int((choice == j).sum())
        if used > p.capacity[p.channels[j]]:
            errors.append(f"{p.channels[j]}: {used} touches over capacity {p.capacity[p.channels[j]]}")
    if p.agent is not None:
        for j, cap in p.agent_caps().items():
            per = np.bincount(p.agent[(choice == j) & (p.agent >= 0)], minlength=1)
            if per.max(initial=0) > cap:
                errors.append(f"{p.channels[j]}: an agent has {per.max()} touches over capacity {cap}")
    return errors


def _margins(p: Problem, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Rows that may use a capacity channel, and their gain over the fallback per capped column."""
    cols = p.capped
    if not cols:
        return np.empty(0, int), np.empty((0, 0)), cols
    m = p.value[:, cols] - fallback[:, None]
    rows = np.flatnonzero((m > 0).any(axis=1))
    m = m[rows]
    return rows, np.where(m > 0, m, -np.inf), cols


def _prune(m: np.ndarray, agent: np.ndarray | None, room: np.ndarray | None, total: int) -> np.ndarray:
    """Pairs that can be in an optimal plan. If more than ``total`` customers gain more than ``i`` from channel
    ``c`` (more than the agent's total room, among the same agent's customers), one of them is left out, and
    swapping it in for ``i`` gains: so only each channel's top ``total`` (per agent: its room) can be chosen."""
    keep = np.isfinite(m)
    for jj in range(m.shape[1]):
        col = np.where(keep[:, jj], m[:, jj], -np.inf)
        if agent is None or room is None:
            groups = [np.arange(len(col))]
            limits = [total]
        else:
            groups = [np.flatnonzero(agent < 0)]
            limits = [total]
            order = np.argsort(agent, kind="stable")
            bounds = np.searchsorted(agent[order], np.arange(room.shape[0] + 1))
            groups += [order[bounds[a]: bounds[a + 1]] for a in range(room.shape[0])]
            limits += [int(min(room[a].sum(), total)) for a in range(room.shape[0])]
        for g, lim in zip(groups, limits, strict=True):
            if len(g) > lim:
                top = g[np.argpartition(-col[g], lim)[lim:]] if lim > 0 else g
                keep[top, jj] = False
    return keep


def _lp(m: np.ndarray, caps: np.ndarray, agent: np.ndarray | None = None, room: np.ndarray | None = None,
        ) -> np.ndarray:
    """Optimal column (or NONE) per row of the gain matrix ``m`` (-inf: not allowed) under column capacities
    ``caps`` and, with ``agent``, per-agent room (agents x columns), by HiGHS."""
    n, k = m.shape
    pick = np.full(n, NONE)
    ok = _prune(m, agent, room, int(caps.sum())) & (m > 0)
    r_idx, c_idx = np.nonzero(ok)
    if len(r_idx) == 0:
        return pick
    nv = len(r_idx)
    var = np.arange(nv)
    blocks = [sparse.csr_matrix((np.ones(nv), (r_idx, var)), shape=(n, nv)),
              sparse.csr_matrix((np.ones(nv), (c_idx, var)), shape=(k, nv))]
    upper = [np.ones(n), caps.astype(float)]
    if agent is not None and room is not None:
        ag = agent[r_idx]
        sel = ag >= 0
        n_agents = room.shape[0]
        blocks.append(sparse.csr_matrix((np.ones(int(sel.sum())), (ag[sel] * k + c_idx[sel], var[sel])),
                                        shape=(n_agents * k, nv)))
        upper.append(room.reshape(-1).astype(float))
    a = sparse.vstack(blocks).tocsr()
    ub = np.minimum(np.concatenate(upper), float(nv))  # an unbounded room is at most every candidate
    # The matrix is totally unimodular, so a simplex vertex is integral: HiGHS's dual simplex on the LP is 10-100x
    # faster than its MIP (which on large books spent minutes in presolve and heuristics for the same optimum).
    res = linprog(-m[r_idx, c_idx], A_ub=a, b_ub=ub, bounds=(0, 1), method="highs-ds")
    if res.x is None or np.abs(res.x - np.round(res.x)).max(initial=0.0) > 1e-6:
        res = milp(-m[r_idx, c_idx], constraints=LinearConstraint(a, -np.inf, ub), bounds=Bounds(0, 1),
                   integrality=np.ones(nv))
    if res.x is None:
        raise RuntimeError(f"HiGHS found no solution: {res.message}")
    x = res.x > 0.5
    pick[r_idx[x]] = c_idx[x]
    return pick


def _room(p: Problem, agent: np.ndarray | None, cols: list[int]) -> np.ndarray | None:
    """Per agent and capped column: the agent's weekly capacity (inf where that channel has no agent cap)."""
    caps = p.agent_caps()
    if agent is None or not caps:
        return None
    n_agents = int(agent.max(initial=-1)) + 1
    row = [caps.get(j, np.inf) for j in cols]
    return np.array([row] * max(n_agents, 0), float).reshape(max(n_agents, 0), len(cols))


def solve_exact(p: Problem) -> np.ndarray:
    """The optimal choice per customer (column index or NONE), by HiGHS on the reduced problem."""
    choice, fallback = _batch_fallback(p)
    rows, m, cols = _margins(p, fallback)
    if len(rows) == 0:
        return choice
    agent = p.agent[rows] if (p.agent is not None and p.agent_caps()) else None
    room = _room(p, agent, cols)
    if room is not None:
        room = np.minimum(room, np.array([p.capacity[p.channels[j]] for j in cols], float)[None, :])
    pick = _lp(m, np.array([p.capacity[p.channels[j]] for j in cols], float), agent, room)
    chosen = pick != NONE
    choice[rows[chosen]] = np.asarray(cols)[pick[chosen]]
    return choice


def _group_kth(margin: np.ndarray, group: np.ndarray, cap: int, n_groups: int, by_group: np.ndarray) -> np.ndarray:
    """Per group, the (cap+1)-th largest positive margin (0 when the group fits its capacity). ``by_group``: the
    rows in group order (a stable argsort of ``group``), which stays the same while the margins change: each
    call then selects within a padded groups x members table instead of sorting every row (3-4x faster)."""
    out = np.zeros(n_groups)
    ok = (margin > 0) & (group >= 0)
    sel = by_group[ok[by_group]]  # the rows that count, in group order
    count = np.bincount(group[sel], minlength=n_groups)
    over = count > cap
    sel = sel[over[group[sel]]]
    if len(sel) == 0:
        return out
    members = count[over]
    width = int(members.max())
    pad = np.full((len(members), width), -np.inf)
    pad[np.repeat(np.arange(len(members)), members),
        np.arange(len(sel)) - np.repeat(np.cumsum(members) - members, members)] = margin[sel]
    out[over] = np.partition(pad, width - cap - 1, axis=1)[:, width - cap - 1]
    return out


class _Dual:
    """The LP dual in channel prices ``lam`` and agent prices ``mu``: D = sum_i max(0, max_c reduced[i, c]) +
    sum_c cap_c lam_c + sum_{a,c} cap_ac mu_ac, with reduced = gain - lam_c - mu_{agent(i), c}."""

    def __init__(self, m: np.ndarray, caps: np.ndarray, agent: np.ndarray | None, agent_caps: np.ndarray) -> None:
        # column-major: every row maximum over a few channels reads contiguous columns (45x faster at 1M x 3)
        self.m, self.caps, self.agent_caps = np.asfortranarray(m), caps, agent_caps
        self.has_agent = agent >= 0 if agent is not None else np.zeros(len(m), bool)
        self.ar = np.maximum(agent, 0) if agent is not None else np.zeros(len(m), int)
        self.n_agents = int(agent.max(initial=-1)) + 1 if agent is not None else 0
        self.by_agent = np.argsort(agent, kind="stable") if agent is not None else np.zeros(0, int)
        self.lam = np.zeros(m.shape[1])
        self.mu = np.zeros((max(self.n_agents, 1), m.shape[1]))
        # kept until lam or mu change: the line searches read them many times at the same prices (at 1M
        # customers, recomputing the agent term was half the solver's time)
        self._agent_term: np.ndarray | None = None
        self._at_lam: tuple[np.ndarray, float] | None = None  # (reduced, dual value) at self.lam

    def set_prices(self, lam: np.ndarray | None = None, mu_column: tuple[int, np.ndarray] | None = None) -> None:
        """Move to new channel prices ``lam`` or one column of the agent prices (``(column, prices)``)."""
        if lam is not None:
            self.lam = lam
        if mu_column is not None:
            self.mu[:, mu_column[0]] = mu_column[1]
            self._agent_term = None
        self._at_lam = None

    def reduced(self, lam: np.ndarray | None = None) -> np.ndarray:
        if lam is None:
            return self._current()[0]
        if self._agent_term is None:
            self._agent_term = np.asfortranarray(np.where(self.has_agent[:, None], self.mu[self.ar], 0.0))
        return self.m - lam[None, :] - self._agent_term

    def value(self, lam: np.ndarray) -> float:
        return self._value(self.reduced(lam), lam)

    def current_value(self) -> float:
        return self._current()[1]

    def _current(self) -> tuple[np.ndarray, float]:
        if self._at_lam is None:
            r = self.reduced(self.lam)
            self._at_lam = (r, self._value(r, self.lam))
        return self._at_lam

    def _value(self, r: np.ndarray, lam: np.ndarray) -> float:
        agents = float((self.mu[: self.n_agents] * self.agent_caps[None, :]).sum()) if self.n_agents else 0.0
        return float(np.maximum(r.max(axis=1), 0.0).sum() + (self.caps * lam).sum()) + agents

    def subset_step(self, subset: np.ndarray, up: bool) -> bool:
        """Exact line search along +/- the subset's indicator; True when the dual fell."""
        r = self.reduced()
        r_s = r[:, subset].max(axis=1)
        rest = r[:, ~subset]
        r_n = np.maximum(rest.max(axis=1, initial=0.0), 0.0)
        cap = int(self.caps[subset].sum())
        if up:
            t = _kth_margin(r_s - r_n, cap)
        else:
            gap = r_n - r_s
            already = int((gap <= 0).sum())
            if already >= cap:
                return False
            pos = np.sort(gap[gap > 0])
            t = float(pos[cap - already - 1]) if len(pos) >= cap - already else float(np.inf)
            t = min(t, float(self.lam[subset].min()))
        if t <= 0:
            return False
        new = self.lam + (t if up else -t) * subset
        now = self.current_value()
        if self.value(new) < now - 1e-9 * max(1.0, abs(now)):
            self.set_prices(lam=np.maximum(new, 0.0))
            return True
        return False

    def agent_sweep(self, agent: np.ndarray, cols_with_caps: list[int]) -> None:
        for jj in cols_with_caps:
            r = self.reduced()
            alt = np.maximum(np.delete(r, jj, axis=1).max(axis=1, initial=0.0), 0.0)
            self.set_prices(mu_column=(jj, _group_kth(self.m[:, jj] - self.lam[jj] - alt, agent,
                                                      int(self.agent_caps[jj]), max(self.n_agents, 1),
                                                      self.by_agent)))


def _kth_margin(margin: np.ndarray, cap: int) -> float:
    """The price that lets at most ``cap`` of ``margin`` through (strictly above it): the (cap+1)-th largest."""
    pos = margin[margin > 0]
    if len(pos) <= cap:
        return 0.0
    return float(np.partition(pos, len(pos) - cap - 1)[len(pos) - cap - 1])


def solve_prices(p: Problem, max_sweeps: int = 200, tie_tol: float = 1e-7) -> tuple[np.ndarray, dict[str, float]]:
    """The optimal choice by capacity prices; also returns each capped channel's final price (CNY).

    A customer takes the capacity channel with the largest gain over its fallback net of that channel's price
    (and its agent's price), if positive. Channel prices minimise the LP dual by steepest descent over subsets of
    channels (raise or lower a subset's prices together, exact line search): the dual is L-natural convex, so a
    point no subset move improves is optimal. Agent prices are set in turn to clear each agent's capacity. The
    few customers tied at the final prices are then settled exactly (HiGHS on the tied rows and the capacity
    left), so the plan is optimal up to ties when the prices are.
    """
    choice, fallback = _batch_fallback(p)
    rows, m, cols = _margins(p, fallback)
    prices = {p.channels[j]: 0.0 for j in cols}
    if len(rows) == 0:
        return choice, prices
    agent_caps = p.agent_caps()
    agent = p.agent[rows] if (p.agent is not None and agent_caps) else None
    # only pairs that can be in an optimal plan take part (the exact solver's exchange argument)
    room = _room(p, agent, cols)
    keep = _prune(m, agent, room, int(sum(p.capacity[p.channels[j]] for j in cols)))
    m = np.where(keep, m, -np.inf)
    live = np.isfinite(m).any(axis=1)
    rows, m = rows[live], m[live]
    agent = agent[live] if agent is not None else None
    if len(rows) == 0:
        return choice, prices
    k = m.shape[1]
    acap = np.array([agent_caps.get(j, 0) for j in cols], float)
    dual = _Dual(m, np.array([p.capacity[p.channels[j]] for j in cols], float), agent, acap)
    subsets = [np.array([(s >> b) & 1 for b in range(k)], bool) for s in range(1, 2 ** k)]
    capped_agents = [jj for jj, j in enumerate(cols) if j in agent_caps]
    for sweep in range(max_sweeps):
        before = dual.current_value()
        if agent is not None:
            dual.agent_sweep(agent, capped_agents)
        moved = True
        while moved:
            moved = any([dual.subset_step(s, up) for s in subsets for up in (True, False)])
        if dual.current_value() >= before - 1e-9 * max(1.0, abs(before)) and sweep > 0:
            break
    else:
        log.warning("capacity prices did not settle in %d sweeps; the plan is repaired to fit capacity", max_sweeps)
    pick = _primal(dual.reduced(), m, p, cols, agent, agent_caps, tie_tol)
    chosen = pick != NONE
    choice[rows[chosen]] = np.asarray(cols)[pick[chosen]]
    for jj, j in enumerate(cols):
        prices[p.channels[j]] = float(dual.lam[jj])
    log.debug("capacity prices after %d sweeps: %s", sweep + 1, prices)
    return choice, prices


def _primal(r: np.ndarray, m: np.ndarray, p: Problem, cols: list[int], agent: np.ndarray | None,
            agent_caps: dict[int, int], tie_tol: float) -> np.ndarray:
    """The choice at the final prices: clear winners take their best channel; customers whose two best options
    (a channel or the fallback at 0) tie within ``tie_tol`` are settled exactly on the capacity left."""
    n = len(r)
    srt = np.sort(np.concatenate([r, np.zeros((n, 1))], axis=1), axis=1)
    scale = np.maximum(1.0, np.abs(m).max(axis=1, initial=1.0, where=np.isfinite(m)))
    tied = (srt[:, -1] - srt[:, -2]) <= tie_tol * scale
    best = np.argmax(r, axis=1)
    pick = np.where(~tied & (r[np.arange(n), best] > 0), best, NONE)
    if tied.any():
        sub = np.flatnonzero(tied)
        caps = np.array([p.capacity[p.channels[j]] - int((pick == jj).sum()) for jj, j in enumerate(cols)], float)
        room = _room(p, agent, cols)
        if room is not None and agent is not None:
            for jj in range(len(cols)):
                used = np.bincount(agent[(pick == jj) & (agent >= 0)], minlength=room.shape[0])
                room[:, jj] -= used[: room.shape[0]]
        res = _lp(m[sub], np.maximum(caps, 0), None if agent is None else agent[sub],
                  None if room is None else np.maximum(room, 0))
        pick[sub] = res
    return _fit(pick, r, m, p, cols, agent, agent_caps)


def _fit(pick: np.ndarray, r: np.ndarray, m: np.ndarray, p: Problem, cols: list[int], agent: np.ndarray | None,
         agent_caps: dict[int, int]) -> np.ndarray:
    """Enforce every capacity, dropping the smallest reduced gains first (a guard: at settled prices nothing is
    dropped; after an unsettled sweep this keeps the plan feasible)."""
    out = pick.copy()
    for jj, j in enumerate(cols):
        rows = np.flatnonzero(out == jj)
        order = rows[np.argsort(-r[rows, jj], kind="stable")]
        if agent is not None and j in agent_caps:
            ag = agent[order]
            order = order[(ag < 0) | (_rank_within(ag) < agent_caps[j])]
        keep = np.zeros(len(out), bool)
        keep[order[: p.capacity[p.channels[j]]]] = True
        out[(out == jj) & ~keep] = NONE
    return out


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0-based position of each element among the earlier elements of the same group (stable)."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    idx = np.arange(len(g)) - np.repeat(start, np.diff(np.r_[start, len(g)]))
    out = np.empty(len(g), int)
    out[order] = idx
    return out


def solve(p: Problem, method: str = "auto", exact_max_pairs: int = 3_000_000) -> np.ndarray:
    """The optimal choice: exact (HiGHS) when the reduced problem has at most ``exact_max_pairs`` candidate
    (customer, capacity channel) pairs, else by prices. ``method`` 'exact' or 'prices' forces one."""
    if method == "auto":
        fb = _batch_fallback(p)[1]
        pairs = int(((p.value[:, p.capped] - fb[:, None]) > 0).sum()) if p.capped else 0
        method = "exact" if pairs <= exact_max_pairs else "prices"
    if method == "exact":
        return solve_exact(p)
    if method == "prices":
        return solve_prices(p)[0]
    raise ValueError(f"unknown allocation method {method!r}: exact | prices | auto")
