"""Point-in-time features and labels per (customer, snapshot): the snapshot SQL, for DuckDB or Spark.

What the features are is declared once in ``features.snapshots.definitions``; this module turns the
declarations into one snapshot's computation, in the engine's dialect (``features.snapshots.dialect``).

**Point in time.** A snapshot ``s`` sees only what happened strictly before ``s``: events with a
date/timestamp ``< s``. The customer archive is a current-state extract, so anything in it that
changes over time (consent flags, first policy date, policy status) is *re-derived from the event
tables* as of ``s`` rather than read from the archive; only slowly-changing profile fields are used
as they are.

**Labels** look at ``[s, s + H)``. A snapshot whose horizon has not fully passed (``s + H > as_of``)
gets null labels.

**Speed.** Windowed counts are summed from disjoint window buckets, each a plain time range of the
contacts (so a time-ordered file is read only where the bucket lies). Within a bucket the counters are
packed into 128-bit words on DuckDB and counted plainly on Spark (``features.snapshots.counters``). Recency comes
from a separate, simpler query over all history, with the maxima kept as 32-bit whole minutes. Row
conditions other than time sit in ``FILTER``/``CASE``, not ``WHERE``; the number of distinct channels
is derived from the per-channel counts instead of ``COUNT(DISTINCT)``. Measurements:
docs/benchmarks.md.

Pure: the caller passes a connection (DuckDB's, or the Spark adapter of ``pipelines.spark_engine``) in
which ``customers``, ``policies``, ``claims`` and ``contacts`` are relations.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from features.snapshots import counters as packing
from features.snapshots.counters import Counters, flags, switch
from features.snapshots.definitions import FeatureDef, FeatureParams, feature_defs
from features.snapshots.dialect import DUCKDB, Dialect
from features.snapshots.plan import Snapshot, sample_fraction

POP_COLUMNS = ["customer_id", "customer_key", "birth_date", "gender", "province", "occupation_class", "income_band",
               "marital_status", "children", "needs_class", "acquisition_source", "referred_by", "agent_id",
               "created_date"]
# The SQL below leans on two invariants that ``validate`` enforces on every contact row (contract
# rule ``holdout_has_no_outcome`` and the ``direction`` codes): a row is a real touch exactly when its
# outcome is not null, and ``direction`` is either 'outbound' or 'inbound'. So an outcome test implies
# a live touch, ``COUNT(outcome)`` counts live touches, and inbound = live - outbound.
LIVE_SQL = "outcome IS NOT NULL"  # a real touch, not a campaign holdout row
ANSWERED_SQL = "outcome <> 'no_answer'"  # false for holdout rows too (null outcome)
# Recency: the latest touch of each kind, from a separate simple aggregate over all history. The
# maxima are kept as whole minutes since MINUTE_BASE in a 32-bit INTEGER rather than as TIMESTAMPs:
# the aggregate's per-customer state halves and the query runs about twice as fast at 5M customers
# (docs/benchmarks.md). Minutes are ample for "days since" and for ordering a quote against a later
# follow-up; the 32-bit range covers the years 1900 +/- 4,000.
RECENCY = {
    "last_contact": LIVE_SQL,
    "last_answered": ANSWERED_SQL,
    "last_quote": "outcome = 'quote'",
    "last_complaint": "outcome = 'complaint'",
    "last_outbound": f"direction = 'outbound' AND {LIVE_SQL}",
}
REC_AGGS = [f"MAX(minute) FILTER (WHERE {cond}) AS {name}_min" for name, cond in RECENCY.items()] + [
    "COUNT(*) FILTER (WHERE outcome = 'opt_out') AS n_opt_out_ever"]
# Parts that are the same at every snapshot of a run: staged once (``SnapshotQuery.once``).
SAMPLE = "smp"
# The one parameter of a snapshot's SQL: its date, bound by the engine rather than written into the text.
SNAPSHOT_PARAM = "snapshot"


def exact_sum(column: str, where: str) -> str:
    """A sum of money over the rows ``where`` holds that does not depend on the order rows arrive in (a sum
    of doubles does: two runs of the 5M snapshot differed in the last bit of one customer's premium): summed
    as a decimal of 4 places (the contract bounds amounts far inside its 14 integer digits), then a double."""
    return f"CAST(SUM(CAST({column} AS DECIMAL(18, 4))) FILTER (WHERE {where}) AS DOUBLE)"


def _w(w: int) -> str:
    return f"{w}d"


def _aliases(aggs: list[str], table: str) -> list[str]:
    """``table.alias`` for each ``<expression> AS alias``: explicit columns instead of ``* EXCLUDE``."""
    return [f"{table}.{a.rsplit(' AS ', 1)[1].strip()}" for a in aggs]


def sample_part(fraction: float, d: Dialect = DUCKDB) -> tuple[str, str]:
    """The stable customer sample of a run's training snapshots, as a named part.

    Decided on the customers' text ids (stable when new customers shift the keys); every other table
    keeps the sampled customers' rows by key (a semi-join on ``smp``), so the aggregates only ever see
    those rows. Hashing 100M contact ids per snapshot instead cost more than the sample saved
    (docs/benchmarks.md).
    """
    return SAMPLE, f"SELECT customer_key FROM customers WHERE {d.sample_predicate(fraction)}"


@dataclass(frozen=True)
class SnapshotQuery:
    """One snapshot's computation: named intermediate relations and the final select over them."""

    parts: list[tuple[str, str]]
    final: Callable[[str], str]  # partition predicate (on ``customer_key``) -> final select
    # (input table, query counting violations, message with {n}) run on the materialised parts by
    # ``materialise``
    checks: tuple[tuple[str, str, str], ...] = ()
    dialect: Dialect = DUCKDB
    once: tuple[tuple[str, str], ...] = ()  # parts equal at every snapshot of a run (the sample)
    params: Mapping[str, dt.date] = field(default_factory=dict)  # bound values of the named parameters

    def args(self, sql: str) -> dict[str, dt.date] | None:
        """The parameters ``sql`` (one of this query's statements) refers to, to bind when it runs.

        Only those: DuckDB refuses values for parameters a statement does not use, and the staged
        views and bound checks use none.
        """
        used = {k: v for k, v in self.params.items() if re.search(re.escape(self.dialect.param(k)) + r"\b", sql)}
        return used or None

    def as_sql(self) -> str:
        """A single portable statement (WITH ... SELECT), e.g. for small books; bind ``args`` of it."""
        return ("WITH " + ",\n".join(f"{name} AS (\n    {body}\n)" for name, body in [*self.once, *self.parts])
                + "\n" + self.final("TRUE"))

    def as_script(self, partitions: int = 1, keys: tuple[int, int] = (0, 0),
                  staged: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
        """(statements materialising each aggregate, final selects per partition).

        Run one at a time, each aggregate has the engine's whole memory budget to itself; as one
        statement they all compete for it and a large book spills or runs out of memory. On DuckDB they
        are temporary tables: kept uncompressed in memory and spilled to the engine's temp directory
        only under pressure (a table in a database file is compressed as it is written, which cost about
        a second per large aggregate at 5M customers). The final join is split into ``partitions``
        ranges of the customer key (``keys``: its smallest and largest value) so that its hash tables
        stay small; the population is a view, so each range reads only its own row groups of the
        customer file (validate writes it in key order). ``staged``: the ``once`` parts already made on
        this connection. Measurements: docs/benchmarks.md.
        """
        d = self.dialect
        views = {"pol_s", "pop"}  # cheap projections, recomputed where used
        stmts = [s for name, body in self.once if name not in staged
                 for s in [*d.unstage(name, False), d.stage(name, body, view=False)]]
        if not d.packed:  # Spark plans the final join as one query; each part is read once there
            views |= {name for name, _ in self.parts}
        stmts += [s for name, body in self.parts
                  for s in [*d.unstage(name, name in views), d.stage(name, body, view=name in views)]]
        if partitions <= 1:
            return stmts, [self.final("TRUE")]
        lo, hi = keys
        step = -(-(hi - lo + 1) // partitions)
        return stmts, [self.final(f"customer_key >= {lo + i * step} AND customer_key < {lo + (i + 1) * step}")
                       for i in range(partitions)]


class FeatureBoundError(ValueError):
    """The data exceed a bound the feature SQL relies on (see ``PACK_LIMIT``); ``table`` holds the rows."""

    def __init__(self, table: str, message: str) -> None:
        super().__init__(message)
        self.table = table


def materialise(con: object, query: SnapshotQuery, partitions: int = 1, staged: set[str] | None = None) -> list[str]:
    """Run ``query``'s staged script and bound checks on ``con``; return its final selects.

    What the features stage, the benchmark and the tests all run, so none of them can skip a check.
    ``staged`` (updated here) names the ``once`` parts this connection already holds. ``con.execute``
    takes the statement and its parameters (``query.args``); the caller binds ``query.args(final)``
    when it runs a final select.
    """
    keys = (0, 0)
    if partitions > 1:
        lo, hi = con.execute("SELECT MIN(customer_key), MAX(customer_key) FROM customers").fetchall()[0]  # type: ignore[attr-defined]
        keys = (lo or 0, hi or 0)
    stmts, finals = query.as_script(partitions, keys, frozenset(staged or ()))
    for stmt in stmts:
        con.execute(stmt, query.args(stmt))  # type: ignore[attr-defined]
    if staged is not None:
        staged.update(name for name, _ in query.once)
    for table, sql, message in query.checks:
        n = con.execute(sql).fetchall()[0][0]  # type: ignore[attr-defined]
        if n:
            raise FeatureBoundError(table, message.format(n=f"{n:,}"))
    return finals


def _contact_counters(p: FeatureParams, d: Dialect) -> Counters:
    """A window bucket's counters; inbound and answered touches follow from the contract's invariants."""
    outcomes = {f"n_{o}": o for o in dict.fromkeys([*p.outcomes, "no_answer"])}
    return Counters((switch("channel", {f"n_{ch}": ch for ch in p.channels}, guard=LIVE_SQL),
                     switch("outcome", outcomes),
                     flags({"n_contacts": LIVE_SQL, "n_outbound": f"direction = 'outbound' AND {LIVE_SQL}",
                            "events_attended": f"channel = 'event' AND {ANSWERED_SQL}", "n_holdout": "holdout"})),
                    packed=d.packed)


def _window_columns(p: FeatureParams, bounds: list[int], counters: Counters) -> tuple[list[str], list[str]]:
    """(bucket sums per window, for the join; window counts read from those sums)."""
    outcomes = [f"n_{o}" for o in dict.fromkeys([*p.outcomes, "no_answer"])]
    sums, win_cols = [], []
    for w in sorted({*p.windows_days, p.holdout_window_days}):
        inside = [j for j in range(len(bounds) - 1) if bounds[j + 1] <= w]
        for name in counters.stored_names("word"):
            sums.append(" + ".join(f"COALESCE(w{j}.{name}, 0)" for j in inside) + f" AS {name}_{_w(w)}")
        field = counters.fields("word{q}_" + _w(w))
        if w == p.holdout_window_days:
            win_cols.append(f"{field['n_holdout']} AS n_holdout")
        if w not in p.windows_days:
            continue
        for name in [*(f"n_{ch}" for ch in p.channels), *outcomes, "n_contacts", "n_outbound"]:
            win_cols.append(f"{field[name]} AS {name}_{_w(w)}")
        if w == p.windows_days[-1]:
            win_cols.append(f"{field['events_attended']} AS events_attended_{_w(w)}")
        win_cols += [f"{field['n_contacts']} - {field['n_outbound']} AS n_inbound_{_w(w)}",
                     f"{field['n_contacts']} - {field['n_no_answer']} AS n_answered_{_w(w)}"]
    return sums, win_cols


def _contact_parts(S: str, bounds: list[int], counters: Counters, d: Dialect, sample: Callable[..., str]) \
        -> list[tuple[str, str]]:
    """Recency over all history, then one aggregate per disjoint window bucket.

    Each contact row falls in exactly one bucket j = [s - bounds[j+1], s - bounds[j]), a plain time
    range, so the scan skips whole row groups of a time-ordered file (validate writes contacts month by
    month); a window is the sum of the buckets inside it. Everything else (holdout, channel, outcome)
    sits in the aggregates' conditions: rows dropped by WHERE reach the hash aggregate as a selection,
    which DuckDB groups several times slower than whole chunks (docs/benchmarks.md).
    """
    bucket_aggs = ", ".join([*counters.aggregates("word"), "COUNT(*) AS n_rows"])
    parts = [("rec", f"""SELECT customer_key, {', '.join(REC_AGGS)}
    FROM (SELECT customer_key, {d.minutes_of("contact_ts")} AS minute, outcome, direction
          FROM contacts WHERE contact_ts < {S}{sample()}) c
    GROUP BY customer_key""")]
    parts += [(f"w{j}", f"""SELECT customer_key, {', '.join(counters.stored("word"))}, n_rows FROM (
    SELECT customer_key, {bucket_aggs}
    FROM contacts WHERE contact_ts >= {S} - INTERVAL '{bounds[j + 1]}' DAY
                    AND contact_ts < {S} - INTERVAL '{bounds[j]}' DAY{sample()}
    GROUP BY customer_key) b""") for j in range(len(bounds) - 1)]
    return parts


def _policies_at(S: str) -> str:
    """The staged policies with ``inforce`` at the snapshot ``S``: computed where used, because the staged
    relation is a view and a DuckDB view cannot refer to a parameter."""
    return f"(SELECT *, (issue_date < {S} AND (end_date IS NULL OR end_date >= {S})) AS inforce FROM pol_s) p"


def _policy_parts(p: FeatureParams, S: str, d: Dialect, sample: Callable[..., str]) \
        -> tuple[list[tuple[str, str]], list[str]]:
    """(policy relations, the joined policy columns). Policy counts are laid out like the window counts;
    ``n_policies_ever`` bounds every one of them."""
    counts = {"n_inforce": "inforce", "n_inforce_monthly": "inforce AND payment_mode = 'monthly'",
              "n_lapsed": f"lapse_date < {S}", "n_surrendered": f"surrender_date < {S}",
              "n_matured": f"maturity_date < {S} AND end_date = maturity_date"}
    counters = Counters((flags(counts), switch("product_line", {f"n_inforce_{ln}": ln for ln in p.product_lines},
                                               guard="inforce")), packed=d.packed)
    sums = [
        "COUNT(*) AS n_policies_ever",
        exact_sum("annual_premium", "inforce") + " AS premium_inforce",
        "COALESCE(" + exact_sum("sum_assured", "inforce") + ", 0) AS sum_assured_inforce",
        "MIN(issue_date) AS first_issue",
        "MAX(issue_date) AS last_issue",
        f"MAX(GREATEST(CASE WHEN lapse_date < {S} THEN lapse_date END, "
        f"CASE WHEN surrender_date < {S} THEN surrender_date END)) AS last_lapse",
    ]
    sums += [exact_sum("annual_premium", f"inforce AND product_line = '{ln}'") + f" AS premium_inforce_{ln}"
             for ln in p.product_lines]
    cols = [f"{v} AS {k}" for k, v in counters.fields("pol.pword{q}").items()] + _aliases(sums, "pol")
    parts = [
        ("pol_s", f"""SELECT customer_id, customer_key, product_line, issue_date, lapse_date, surrender_date,
           maturity_date, annual_premium, sum_assured, payment_mode,
           LEAST(lapse_date, surrender_date, maturity_date) AS end_date
    FROM policies WHERE TRUE{sample()}"""),
        ("pol", f"""SELECT customer_key, {', '.join(counters.stored("pword") + _aliases(sums, "p"))} FROM (
    SELECT customer_key, {', '.join([*counters.aggregates("pword"), *sums])}
    FROM {_policies_at(S)} WHERE issue_date < {S}
    GROUP BY customer_key) p"""),
        ("main_mode", f"""SELECT customer_key, payment_mode AS main_payment_mode FROM (
        SELECT customer_key, payment_mode,
               ROW_NUMBER() OVER (PARTITION BY customer_key
                                  ORDER BY annual_premium DESC, issue_date, payment_mode) AS rk
        FROM {_policies_at(S)} WHERE inforce) m
    WHERE rk = 1"""),
    ]
    return parts, cols


def _claim_aggs(p: FeatureParams, S: str) -> list[str]:
    aggs = []
    for w in p.claim_windows_days:
        inw = f"claim_date >= CAST({S} - INTERVAL '{w}' DAY AS DATE)"
        aggs.append(f"COUNT(*) FILTER (WHERE {inw}) AS n_claims_{_w(w)}")
        aggs.append(exact_sum("amount", inw) + f" AS claim_amount_{_w(w)}")
    aggs.append(f"COUNT(*) FILTER (WHERE status = 'rejected') AS n_claims_rejected_{_w(p.claim_windows_days[-1])}")
    return aggs


def _labels(S: str, horizon_days: int, labels_known: bool) -> tuple[str, str]:
    """(the label relation, or "" when the horizon has not passed; the label columns)."""
    if not labels_known:
        return "", ("CAST(NULL AS INTEGER) AS purchase_h, CAST(NULL AS INTEGER) AS lapse_h, "
                    "CAST(NULL AS DOUBLE) AS premium_h")
    end_h = f"({S} + INTERVAL '{horizon_days}' DAY)"
    premium = exact_sum("annual_premium", f"issue_date >= {S}")
    lab = f"""SELECT customer_key,
            CASE WHEN COUNT(*) FILTER (WHERE issue_date >= {S}) > 0 THEN 1 ELSE 0 END AS purchase_h,
            COALESCE({premium}, 0) AS premium_h,
            COUNT(*) FILTER (WHERE inforce) AS held,
            COUNT(*) FILTER (WHERE inforce AND ((lapse_date >= {S} AND lapse_date < {end_h})
                                                OR (surrender_date >= {S} AND surrender_date < {end_h}))) AS lapsed
        FROM {_policies_at(S)} WHERE issue_date < {end_h}
        GROUP BY customer_key"""
    return lab, ("COALESCE(lab.purchase_h, 0) AS purchase_h, "
                 "CASE WHEN lab.held > 0 THEN CASE WHEN lab.lapsed > 0 THEN 1 ELSE 0 END END AS lapse_h, "
                 "CAST(COALESCE(lab.premium_h, 0) AS DOUBLE) AS premium_h")


def _feature_select(defs: list[FeatureDef], S: str, d: Dialect) -> list[str]:
    """Each declared feature, its days-to-snapshot written in the dialect, cast to its declared type."""
    def days(expr: str) -> str:
        return d.days_between(expr, S)

    return [f"CAST({fd.expression(days)} AS {d.cast_type(fd.dtype)}) AS {fd.name}" for fd in defs]


def _checks(s: dt.date, bounds: list[int]) -> list[tuple[str, str, str]]:
    """Packed fields cannot overflow while every bucket's rows stay under an equal share of PACK_LIMIT."""
    PACK_LIMIT = packing.PACK_LIMIT
    share = PACK_LIMIT // (len(bounds) - 1)
    checks = [("policies", f"SELECT COUNT(*) FROM pol WHERE n_policies_ever >= {PACK_LIMIT}",
               f"policies: {{n}} customer(s) hold {PACK_LIMIT:,} or more policies before the snapshot {s}; policy "
               "counts are packed with room for fewer. Look for runaway or duplicated rows in the policy table.")]
    checks += [("contacts", f"SELECT COUNT(*) FROM w{j} WHERE n_rows >= {share}",
                f"contacts: {{n}} customer(s) have {share:,} or more contact rows between {bounds[j + 1]} and "
                f"{bounds[j]} days before the snapshot {s}; window counts are packed with room for "
                f"{PACK_LIMIT - 1:,} per customer and window. No real contact rate comes near that: look for "
                "runaway or duplicated rows in the contact history.") for j in range(len(bounds) - 1)]
    return checks


def snapshot_query(p: FeatureParams, s: dt.date, horizon_days: int, labels_known: bool,
                   sample_fraction: float | None = None, dialect: Dialect = DUCKDB) -> SnapshotQuery:
    """The computation for one snapshot, as named parts (see ``SnapshotQuery``)."""
    S, d = dialect.param(SNAPSHOT_PARAM), dialect
    cmax = p.claim_windows_days[-1]
    bounds = sorted({0, *p.windows_days, p.holdout_window_days})
    counters = _contact_counters(p, d)
    sums, win_cols = _window_columns(p, bounds, counters)
    rec_cols = [f"{d.timestamp_of_minutes(f'rec.{name}_min')} AS {name}_ts" for name in RECENCY]
    rec_cols.append("rec.n_opt_out_ever")
    clm_aggs = _claim_aggs(p, S)
    lab, lab_cols = _labels(S, horizon_days, labels_known)

    def sample(column: str = "customer_key") -> str:
        return f" AND {column} IN (SELECT customer_key FROM {SAMPLE})" if sample_fraction is not None else ""

    policy_parts, pol_cols = _policy_parts(p, S, d, sample)
    # The heavy contact aggregates come first: run while the engine's memory holds no other intermediate
    # table, they do not spill (docs/benchmarks.md).
    parts = [
        *_contact_parts(S, bounds, counters, d, sample),
        ("pop", f"SELECT {', '.join(POP_COLUMNS)} FROM customers WHERE TRUE{sample()}"),  # a view: no parameter
        *policy_parts,
        ("clm", f"""SELECT customer_key, {', '.join(clm_aggs)}
    FROM claims WHERE claim_date < {S} AND claim_date >= CAST({S} - INTERVAL '{cmax}' DAY AS DATE){sample()}
    GROUP BY customer_key"""),
        ("refs", f"""SELECT referred_by_key AS customer_key, COUNT(*) AS referrals_made
    FROM customers WHERE created_date < {S} AND referred_by_key IS NOT NULL{sample("referred_by_key")}
    GROUP BY referred_by_key"""),
    ]
    if lab:
        parts.append(("lab", lab))
    select = _feature_select(feature_defs(p), S, d)

    def final(pf: str) -> str:
        """The final select over the customers satisfying ``pf`` (every relation is filtered alike)."""

        def rel(name: str, when: str = "TRUE") -> str:
            return f"(SELECT * FROM {name} WHERE {when} AND {pf})"

        joins = "\n    ".join(
            f"LEFT JOIN {rel(n)} {n} ON {n}.customer_key = pop.customer_key"
            for n in ("pol", "main_mode", "clm", "refs", "rec", *(f"w{j}" for j in range(len(bounds) - 1))))
        lab_join = f"LEFT JOIN {rel('lab')} lab ON lab.customer_key = j.customer_key" if lab else ""
        return f"""SELECT j.customer_id, {S} AS snapshot_date,
    {(","+chr(10)+"    ").join(select)},
    {lab_cols}
FROM (
    -- window counts read from the summed bucket counters
    SELECT j0.*, {", ".join(win_cols)}
    FROM (
        -- one streaming pass of the population through narrow per-customer relations
        SELECT {", ".join(f"pop.{c}" for c in POP_COLUMNS)},
            {", ".join(pol_cols)}, main_mode.main_payment_mode,
            {", ".join(_aliases(clm_aggs, "clm"))}, refs.referrals_made,
            {", ".join(rec_cols)},
            {", ".join(sums)}
        FROM {rel("pop", f"created_date < {S}")} pop
        {joins}
    ) j0
) j
{lab_join}"""

    once = () if sample_fraction is None else (sample_part(sample_fraction, d),)
    return SnapshotQuery(parts, final, tuple(_checks(s, bounds)) if d.packed else (), d, once,
                         {SNAPSHOT_PARAM: s})


# ---------------------------------------------------------------------------------------------
# Execution of a plan (features/snapshots/plan.py)
# ---------------------------------------------------------------------------------------------
def features_frame(con: object, p: FeatureParams, plan: Iterable[Snapshot], horizon_days: int,
                   n_customers: int = 0, partitions: int = 1) -> pd.DataFrame:
    """Execute the plan on ``con`` (a DuckDB connection) and return one DataFrame (small books, tests)."""
    frac = sample_fraction(p, n_customers)
    out: list[pd.DataFrame] = []
    staged: set[str] = set()
    for snap in plan:
        query = snapshot_query(p, snap.date, horizon_days, snap.labels_known, None if snap.scoring else frac)
        out += [con.execute(f, query.args(f)).df()  # type: ignore[attr-defined]
                for f in materialise(con, query, partitions, staged)]
    return pd.concat(out, ignore_index=True)
