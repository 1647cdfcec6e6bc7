"""A synthetic insurance book with known ground truth.

The book is simulated day by day so that models trained on it meet the difficulties of a real one:

* **purchase hazard** from life stage and needs class, ability (income, premium capacity) and
  willingness (relationship, engagement), with a cool-down after a purchase and saturation with
  the number of lines held;
* **contacts** raise a decaying stimulus with channel-specific strength and diminishing returns;
  **fatigue** (many touches in a short time) lowers reach and response and raises complaints and
  opt-outs;
* **quotes** convert better when followed up quickly;
* **lapse hazard** from premium burden, payment mode, policy duration, service contact,
  complaints and claims experience;
* agents target customers they believe are valuable (confounding, as in real books), monthly
  **campaigns** keep a random **holdout**, customers **refer** others, some are never contacted;
* realistic missing values and a small share of **dirty rows** the validate stage must catch.

``simulate_book`` returns the raw tables plus ``truth``: for every customer at the as-of date, the
true probability of a purchase and of a lapse within the horizon under business as usual, with no
outbound contact, and with one sales contact today through each channel.

Pure: parameters in, DataFrames out; the random generator is seeded from the parameters.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd

from features.simulator.draws import DayDraws, SharedGenerator
from features.simulator.frozen import freeze, settle
from features.simulator.params import OUTBOUND_SALES_CHANNELS, BookSize, SyntheticParams, WorldChange, WorldParams
from features.simulator.tables import add_missing, book_tables, inject_dirt
from features.simulator.world import World

__all__ = ["OUTBOUND_SALES_CHANNELS", "BookSize", "SyntheticBook", "SyntheticParams", "WorldChange", "WorldParams",
           "extract_tables", "simulate_book", "simulate_history", "simulate_truth", "truth_summary"]
log = logging.getLogger(__name__)
# Policy columns a forward run without realisation never writes (``World.step(realise=False)``): only claims'
# ``bad_claim`` moves. ``test_truth_with_the_policy_side_frozen_equals_recomputing_it`` checks they stay unchanged.
READ_ONLY_POLICY_COLUMNS = ("cust", "line", "issue", "premium", "sum", "mode", "maturity", "status", "end")
# The truth's work in parts: scenarios and the replicates of them to run (``_replicates``), and each part's result.
Task = tuple[tuple[str, ...], range]
Runs = dict[str, list[tuple[np.ndarray, np.ndarray]]]
# How the parts are run: ``map`` in this process, or a process pool's ``map`` (the caller's choice: each run is
# seeded by its own replicate and day, so the result is the same wherever it ran).
Mapper = Callable[[Callable[[Task], Runs], Iterable[Task]], Iterator[Runs]]
# Replicates per part: parts small enough to keep two processes busy to the end and to report progress, each
# sharing its draws among the scenarios of a replicate (``features.simulator.draws``).
REPLICATES_PER_TASK = 4
# A replicate's shared draws are held while its scenarios run: about 8 bytes per customer and per policy row a day
# (the inbound and claim draws), about 100 MB on the default book. Above this, each scenario draws its own.
SHARED_DRAWS_MAX_BYTES = 1 << 30


@dataclass
class SyntheticBook:
    """The raw tables (contract shape, personal fields included), the truth and a summary."""

    customers: pd.DataFrame
    policies: pd.DataFrame
    claims: pd.DataFrame
    contacts: pd.DataFrame
    truth: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"customers": self.customers, "policies": self.policies, "claims": self.claims,
                "contacts": self.contacts}



def _replicates(template: World, inforce_at: np.ndarray, p: SyntheticParams, stream: int, task: Task,
                share_draws: bool = True) -> Runs:
    """Replicates ``task[1]`` of the scenarios ``task[0]``: each run's (purchase, lapse) probabilities, per scenario
    in replicate order. With ``share_draws`` the scenarios of a replicate are served each day's draws they share
    from one generator (``features.simulator.draws``): the same numbers, drawn once."""
    scenarios, reps = task
    shared = _read_only(template)
    share = share_draws and len(scenarios) > 1 and shared_draw_bytes(template, p) <= SHARED_DRAWS_MAX_BYTES
    out: Runs = {sc: [] for sc in scenarios}
    for r in reps:
        # common random numbers: replicate r draws the same numbers on day d in every scenario, so a scenario's
        # difference from "none" is the touch's effect, not two unrelated draws of claims
        seeds = [[p.seed, stream, r, d] for d in range(p.horizon_days)]
        days = [DayDraws(seed) for seed in seeds] if share else None
        for sc in scenarios:
            out[sc].append(_run(template, shared, inforce_at, p, sc, seeds, days))
    return out


def shared_draw_bytes(template: World, p: SyntheticParams) -> int:
    """About what a replicate's shared draws hold: a double per customer and per policy row, each day."""
    return 8 * (template.n + template.pol.n) * p.horizon_days


def _run(template: World, shared: dict[int, object], inforce_at: np.ndarray, p: SyntheticParams, sc: str,
         seeds: list[list[int]], days: list[DayDraws] | None) -> tuple[np.ndarray, np.ndarray]:
    """One forward run of scenario ``sc`` over the horizon: each customer's (purchase, lapse) probability."""
    H, n, P = p.size.history_days, template.n, template.pol
    sim = copy.deepcopy(template, dict(shared))  # what a forward run only reads is shared, not copied
    acc = {"purchase": np.zeros(n), "lapse": np.zeros(n),
           "lapse_mask": np.r_[inforce_at, np.zeros(len(sim.pol.cust) - P.n, bool)]}
    for d in range(p.horizon_days):
        # the generator's stand-in draws what World.step asks for (features.simulator.draws)
        sim.rng = (np.random.default_rng(seeds[d]) if days is None
                   else cast(np.random.Generator, SharedGenerator(days[d])))
        mode = sc if sc in ("bau", "none") else (sc if d == 0 else "none")
        sim.step(H + d, outbound=mode, realise=False, acc=acc)
    if sim.frozen is not None:
        settle(sim.frozen, acc)
    return -np.expm1(acc["purchase"]), -np.expm1(acc["lapse"])


def _tasks(scenarios: list[str], replicates: int) -> list[Task]:
    """Business as usual apart (it draws for its agents and campaigns what no other scenario does); the other
    scenarios together, sharing their draws. Per scenario, its replicates in order (``_truth`` sums them so)."""
    rest = tuple(sc for sc in scenarios if sc != "bau")
    tasks: list[Task] = []
    for start in range(0, replicates, REPLICATES_PER_TASK):
        reps = range(start, min(start + REPLICATES_PER_TASK, replicates))
        tasks.append((rest, reps))
        if "bau" in scenarios:
            tasks.append((("bau",), reps))
    return tasks


def _read_only(template: World) -> dict[int, object]:
    """A ``deepcopy`` memo of what the truth's forward runs read but never write: the frozen policy side, every
    policy column but ``bad_claim`` (claims still happen), the campaign plan and the channel preferences. Copying
    them was nearly all of each replicate's copy of the world (10 of 10.5 ms, 288 times a run)."""
    P = template.pol
    keep: list[object] = [template.frozen, template.campaigns, template.pref,
                          *(getattr(P, c) for c in READ_ONLY_POLICY_COLUMNS)]
    return {id(x): x for x in keep}


def _truth(w: World, p: SyntheticParams, progress: Callable[[str], None], stream: int = 7,
           mapper: Mapper = map) -> pd.DataFrame:
    """True purchase/lapse probabilities over the horizon from the as-of date, per scenario.

    Each scenario is averaged over ``truth_replicates`` forward runs. Replicate r uses the same random numbers
    on each day in every scenario (common random numbers, stream ``[seed, stream, r, day]``), so the effect of
    a touch (scenario minus "none") is not buried under two unrelated draws of claims and service calls: with
    independent streams, two 4-replicate truths' SMS lapse effects per customer correlated 0.06 and the oracle
    plan chased that noise (docs/synthetic_book.md). ``mapper`` runs the parts (``_tasks``, ``Mapper``).
    """
    H = p.size.history_days
    n = w.n
    P = w.pol
    inforce_at = np.zeros(P.n, bool)
    inforce_at[: P.n] = P.status[: P.n] == 0
    holder = np.bincount(P.cust[: P.n][inforce_at], minlength=n) > 0
    scenarios = ["bau", "none"] + OUTBOUND_SALES_CHANNELS
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    template = copy.copy(w)
    template.contacts = None  # type: ignore[assignment]  # nothing is recorded in truth mode
    template.claims = None  # type: ignore[assignment]
    template.frozen = freeze(template)  # nothing is realised: the policy side is the same every day
    run = functools.partial(_replicates, template, inforce_at, p, stream)
    tasks = _tasks(scenarios, p.truth_replicates)
    pur = {sc: np.zeros(n) for sc in scenarios}
    lap = {sc: np.zeros(n) for sc in scenarios}
    for (names, reps), runs in zip(tasks, mapper(run, tasks), strict=True):
        for sc, results in runs.items():  # a scenario's replicates arrive in order: summed as one loop would
            for r_pur, r_lap in results:
                pur[sc] += r_pur
                lap[sc] += r_lap
        what = " + ".join(names) if len(names) < 3 else f"{names[0]} and {len(names) - 1} channels"
        progress(f"truth: replicates {reps.start + 1}-{reps.stop} of {p.truth_replicates}, {what}")
    for sc in scenarios:
        out[sc] = (pur[sc] / p.truth_replicates, lap[sc] / p.truth_replicates)
        progress(f"truth scenario {sc}: mean p_purchase {out[sc][0][w.created < H].mean():.4f}")
    keep = w.created < H
    cid = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)
    truth = pd.DataFrame({"customer_id": cid, "as_of": pd.Timestamp(p.as_of), "horizon_days": p.horizon_days,
                          "holds_in_force": holder})
    truth["p_purchase"] = out["bau"][0]
    truth["p_lapse"] = np.where(holder, out["bau"][1], np.nan)
    truth["p_purchase_no_contact"] = out["none"][0]
    truth["p_lapse_no_contact"] = np.where(holder, out["none"][1], np.nan)
    for ch in OUTBOUND_SALES_CHANNELS:
        truth[f"p_purchase_{ch}"] = out[ch][0]
        truth[f"p_lapse_{ch}"] = np.where(holder, out[ch][1], np.nan)
    # the latent drivers, for diagnostics only (never features)
    truth["latent_ability"] = w.ability
    truth["latent_willingness"] = w.will
    truth["latent_need"] = w.need
    return truth[keep].reset_index(drop=True)


def simulate_history(p: SyntheticParams, progress: Callable[[str], None] | None = None) -> World:
    """The book's world, simulated day by day up to the day before ``as_of``: what the raw tables are extracted
    from and what the truth runs forward from. Seeded by the parameters, so two calls build the same world (the
    ``truth`` stage simulates it again rather than reading a serialised world from ``generate``)."""
    say = progress or (lambda msg: log.info(msg))
    w = World(p, np.random.default_rng(p.seed))
    H = p.size.history_days
    say(f"simulating {p.size.n_customers:,} customers over {H} days up to {p.as_of}")
    for t in range(H):
        w.step(t)
        if (t + 1) % 180 == 0 or t == H - 1:
            say(f"  day {t + 1}/{H}: {w.pol.n:,} policies, {sum(len(c) for c in w.contacts.chunks['cust']):,} contacts")
    return w


def extract_tables(w: World, p: SyntheticParams) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """The raw tables a real export would hold (missing values and dirty rows included) and their summary. Reads
    ``w`` only (the truth's forward runs copy it), so the tables do not depend on whether the truth ran."""
    trng = np.random.default_rng([p.seed, 99])
    tables = book_tables(w, p, trng)
    add_missing(tables, p.missing_share, trng)
    dirt = inject_dirt(tables, p.dirty_share, p.as_of, trng)
    summary = {
        "as_of": str(p.as_of),
        "rows": {k: int(len(v)) for k, v in tables.items()},
        "dirty_rows_injected": dirt,
        "customers_without_contacts": int(
            (~tables["customers"]["customer_id"].isin(tables["contacts"]["customer_id"].unique())).sum()),
    }
    return tables, summary


def truth_summary(truth: pd.DataFrame) -> dict[str, float]:
    """The truth's headline shares (``data/reports/truth.json``)."""
    return {"holders_share": float(truth["holds_in_force"].mean()),
            "mean_true_p_purchase": float(truth["p_purchase"].mean()),
            "mean_true_p_lapse_holders": float(truth["p_lapse"].mean())}


def simulate_truth(p: SyntheticParams, progress: Callable[[str], None] | None = None,
                   mapper: Mapper = map) -> pd.DataFrame:
    """The truth alone: the history simulated again (the same world as ``simulate_book``'s), then run forward
    from ``as_of`` (its scenarios through ``mapper``)."""
    say = progress or (lambda msg: log.info(msg))
    return _truth(simulate_history(p, say), p, say, mapper=mapper)


def simulate_book(p: SyntheticParams, progress: Callable[[str], None] | None = None,
                  mapper: Mapper = map) -> SyntheticBook:
    """Simulate the book up to the day before ``as_of`` and the truth from ``as_of`` on (its scenarios through
    ``mapper``: a process pool's ``map`` runs them in parallel with the same result). The stages take the two
    apart: ``generate`` extracts the tables from ``simulate_history``, the ``truth`` stage runs ``simulate_truth``."""
    say = progress or (lambda msg: log.info(msg))
    w = simulate_history(p, say)
    # pending claims and the extract happen at as-of; truth runs forward from a copy of the state
    truth = _truth(w, p, say, mapper=mapper)
    tables, summary = extract_tables(w, p)
    return SyntheticBook(truth=truth, summary=summary | truth_summary(truth), **tables)
