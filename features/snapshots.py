"""Point-in-time features and labels per (customer, snapshot), in portable SQL run by DuckDB.

Every feature is declared once (``FeatureDef``): its name, family, window, type, a one-line
description in English and Chinese, and its SQL expression. The SQL, the feature dictionary and
``docs/features.md`` all come from that list.

**Point in time.** A snapshot ``s`` sees only what happened strictly before ``s``: events with a
date/timestamp ``< s``. The customer archive is a current-state extract, so anything in it that
changes over time (consent flags, first policy date, policy status) is *re-derived from the event
tables* as of ``s`` rather than read from the archive; only slowly-changing profile fields are used
as they are.

**Labels** look at ``[s, s + H)``. A snapshot whose horizon has not fully passed (``s + H > as_of``)
gets null labels.

**Speed.** Windowed counts are summed from disjoint window buckets, each a plain time range of the
contacts (so a time-ordered file is read only where the bucket lies); within a bucket the counters
are packed eight to a 128-bit integer, one family (channels, outcomes, the rest) to a word, and summed
as one aggregate per word with one ``CASE`` per word and row (the engine's cost grows with the number
of aggregates and per-row conditions), then split into 64-bit halves before the final join, which sums
and unpacks them. Recency comes from a separate, simpler query over all history, with the maxima kept
as 32-bit whole minutes. Row conditions other than time sit in ``FILTER``/``CASE``, not
``WHERE``; the number of distinct channels is derived from the per-channel counts instead of
``COUNT(DISTINCT)``. Measurements: docs/benchmarks.md.

**Portability.** Standard SQL (``FILTER``, ``CASE``, ``LEAST``, ``GREATEST``, ``DATE``/``INTERVAL``
literals, integer shifts and masks); the dialect-specific pieces are ``_days_between``,
``_minutes_of``, ``_timestamp_of_minutes``, ``_halves``, ``_unpack``, ``_word_sums`` (``PACK_WORD``) and
``_sample_predicate``, each with its Spark equivalent in its docstring or beside ``PACK_WORD``.

Pure: the caller passes a DuckDB connection in which ``customers``, ``policies``, ``claims`` and
``contacts`` are relations (views over Parquet in the pipeline, DataFrames in the tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.contract import CHANNELS, OUTCOMES, PRODUCT_LINES, TABLES

INCOME_RANK = {code: i for i, code in enumerate(TABLES["customers"].column("income_band").allowed or ())}
# Mid-points of the income bands (CNY / year), for the premium-burden ratio.
INCOME_MID = {"lt_100k": 60_000, "100k_200k": 150_000, "200k_500k": 320_000, "500k_1m": 700_000, "gt_1m": 1_800_000}
MONTH_DAYS = 30.4375


class FeatureParams(BaseModel):
    """What to compute. Lists are validated against the contract's codes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_train_snapshots: int = Field(ge=1, le=120)
    snapshot_step_months: int = Field(ge=1, le=12)
    windows_days: list[int] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    outcomes: list[str] = Field(min_length=1)
    product_lines: list[str] = Field(min_length=1)
    claim_windows_days: list[int] = Field(min_length=1)
    holdout_window_days: int = Field(ge=1, le=365)
    train_sample_max_customers: int = Field(ge=0)

    @model_validator(mode="after")
    def _codes(self) -> FeatureParams:
        for name, values, allowed in (("channels", self.channels, CHANNELS), ("outcomes", self.outcomes, OUTCOMES),
                                      ("product_lines", self.product_lines, PRODUCT_LINES)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"{name}: unknown code(s) {bad}; allowed: {list(allowed)}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: duplicates in {values}")
        for name, ws in (("windows_days", self.windows_days), ("claim_windows_days", self.claim_windows_days)):
            if sorted(set(ws)) != ws or ws[0] < 1 or ws[-1] > 3650:
                raise ValueError(f"{name} must be strictly increasing day counts in 1..3650, got {ws}")
        return self


@dataclass(frozen=True)
class FeatureDef:
    name: str
    family: str  # profile | holdings | claims | referrals | contacts | outcomes | recency | engagement
    dtype: str  # int | float | category | bool
    window_days: int | None
    en: str
    zh: str
    sql: str  # expression over the joined snapshot relation (see snapshot_query)


def _w(w: int) -> str:
    return f"{w}d"


# ---------------------------------------------------------------------------------------------
# Feature declarations
# ---------------------------------------------------------------------------------------------
def feature_defs(p: FeatureParams) -> list[FeatureDef]:
    """All features, in output order, for these parameters."""
    ch_zh, out_zh = CHANNELS, OUTCOMES
    f: list[FeatureDef] = []

    def add(*a: object) -> None:
        f.append(FeatureDef(*a))  # type: ignore[arg-type]

    # profile (slowly-changing archive fields, used as they are)
    add("age_years", "profile", "float", None, "Age in years", "年龄(岁)",
        "CAST(_days(birth_date) AS DOUBLE) / 365.25")
    add("gender", "profile", "category", None, "Gender", "性别", "gender")
    add("province", "profile", "category", None, "Province", "省份", "province")
    add("occupation_class", "profile", "int", None, "Occupation risk class (1-6)", "职业类别(1-6)", "occupation_class")
    add("income_band", "profile", "category", None, "Income band", "收入档次", "income_band")
    add("income_rank", "profile", "int", None, "Income band as a rank (0 = lowest)", "收入档次序号(0为最低)",
        "CASE income_band " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in INCOME_RANK.items()) + " END")
    add("marital_status", "profile", "category", None, "Marital status", "婚姻状况", "marital_status")
    add("children", "profile", "int", None, "Number of children", "子女数", "children")
    add("needs_class", "profile", "category", None, "Needs class", "需求类别", "needs_class")
    add("acquisition_source", "profile", "category", None, "Acquisition source", "获客来源", "acquisition_source")
    add("tenure_months", "profile", "int", None, "Months since the customer record was created", "客户关系月数",
        f"CAST(FLOOR(_days(created_date) / {MONTH_DAYS}) AS INTEGER)")
    add("was_referred", "profile", "bool", None, "Came through a referral", "转介绍获客",
        "referred_by IS NOT NULL")
    add("has_agent", "profile", "bool", None, "Has a servicing agent (not an orphan account)", "有服务代理人(非孤儿单)",
        "agent_id IS NOT NULL")
    # holdings at the snapshot
    add("n_inforce", "holdings", "int", None, "In-force policies", "有效保单数", "COALESCE(n_inforce, 0)")
    add("premium_inforce", "holdings", "float", None, "Annual premium of in-force policies (CNY)",
        "有效保单年缴保费(元)", "COALESCE(premium_inforce, 0)")
    add("sum_assured_inforce", "holdings", "float", None, "Sum assured of in-force policies (CNY)",
        "有效保单总保额(元)", "COALESCE(sum_assured_inforce, 0)")
    for ln in p.product_lines:
        add(f"n_inforce_{ln}", "holdings", "int", None, f"In-force {ln.replace('_', ' ')} policies",
            f"有效{PRODUCT_LINES[ln]}保单数", f"COALESCE(n_inforce_{ln}, 0)")
        add(f"premium_inforce_{ln}", "holdings", "float", None,
            f"Annual premium of in-force {ln.replace('_', ' ')} (CNY)",
            f"有效{PRODUCT_LINES[ln]}年缴保费(元)", f"COALESCE(premium_inforce_{ln}, 0)")
    add("n_lines_held", "holdings", "int", None, "Distinct product lines in force", "持有险种数",
        " + ".join(f"CASE WHEN COALESCE(n_inforce_{ln}, 0) > 0 THEN 1 ELSE 0 END" for ln in p.product_lines))
    add("main_payment_mode", "holdings", "category", None, "Payment mode of the largest in-force policy",
        "主力保单缴费方式", "main_payment_mode")
    add("n_inforce_monthly", "holdings", "int", None, "In-force policies paid monthly", "月缴有效保单数",
        "COALESCE(n_inforce_monthly, 0)")
    add("premium_to_income", "holdings", "float", None, "In-force premium / income band mid-point (burden)",
        "保费收入比(缴费负担)",
        "COALESCE(premium_inforce, 0) / CASE income_band "
        + " ".join(f"WHEN '{k}' THEN {v}.0" for k, v in INCOME_MID.items()) + " END")
    add("n_policies_ever", "holdings", "int", None, "Policies ever bought", "累计投保件数",
        "COALESCE(n_policies_ever, 0)")
    add("n_lapsed", "holdings", "int", None, "Policies lapsed so far", "累计失效保单数", "COALESCE(n_lapsed, 0)")
    add("n_surrendered", "holdings", "int", None, "Policies surrendered so far", "累计退保保单数",
        "COALESCE(n_surrendered, 0)")
    add("n_matured", "holdings", "int", None, "Policies matured so far", "累计满期保单数", "COALESCE(n_matured, 0)")
    add("months_since_first_policy", "holdings", "int", None, "Months since the first policy", "首单至今月数",
        f"CAST(FLOOR(_days(first_issue) / {MONTH_DAYS}) AS INTEGER)")
    add("months_since_last_purchase", "holdings", "int", None, "Months since the last new policy", "距上次投保月数",
        f"CAST(FLOOR(_days(last_issue) / {MONTH_DAYS}) AS INTEGER)")
    add("months_since_last_lapse", "holdings", "int", None, "Months since the last lapse or surrender",
        "距上次失效/退保月数", f"CAST(FLOOR(_days(last_lapse) / {MONTH_DAYS}) AS INTEGER)")
    # claims
    for w in p.claim_windows_days:
        add(f"n_claims_{_w(w)}", "claims", "int", w, f"Claims in the last {w} days", f"近{w}天理赔次数",
            f"COALESCE(n_claims_{_w(w)}, 0)")
        add(f"claim_amount_{_w(w)}", "claims", "float", w, f"Amount claimed in the last {w} days (CNY)",
            f"近{w}天理赔金额(元)", f"COALESCE(claim_amount_{_w(w)}, 0)")
    wl = p.claim_windows_days[-1]
    add(f"n_claims_rejected_{_w(wl)}", "claims", "int", wl, f"Rejected claims in the last {wl} days",
        f"近{wl}天拒赔次数", f"COALESCE(n_claims_rejected_{_w(wl)}, 0)")
    add("referrals_made", "referrals", "int", None, "Customers this customer referred (chain)", "转介绍客户数",
        "COALESCE(referrals_made, 0)")
    # contacts per channel and window; totals; outcomes. The window counts are never null (the final join sums
    # COALESCEd buckets), so they need no COALESCE here: one expression fewer per count and customer.
    for w in p.windows_days:
        for ch in p.channels:
            add(f"n_{ch}_{_w(w)}", "contacts", "int", w, f"{ch} touches in the last {w} days",
                f"近{w}天{ch_zh[ch]}接触次数", f"n_{ch}_{_w(w)}")
        add(f"n_contacts_{_w(w)}", "contacts", "int", w, f"Touches of any kind in the last {w} days",
            f"近{w}天接触总次数", f"n_contacts_{_w(w)}")
        add(f"n_outbound_{_w(w)}", "contacts", "int", w, f"Touches we initiated in the last {w} days (fatigue)",
            f"近{w}天主动接触次数(疲劳度)", f"n_outbound_{_w(w)}")
        add(f"n_inbound_{_w(w)}", "contacts", "int", w, f"Touches the customer initiated in the last {w} days",
            f"近{w}天客户主动来访/来电次数", f"n_inbound_{_w(w)}")
        for o in p.outcomes:
            add(f"n_{o}_{_w(w)}", "outcomes", "int", w, f"Touches ending '{o.replace('_', ' ')}' in the last {w} days",
                f"近{w}天结果为{out_zh[o]}的次数", f"n_{o}_{_w(w)}")
        add(f"reached_rate_{_w(w)}", "outcomes", "float", w,
            f"Share of touches answered in the last {w} days (null without touches)", f"近{w}天接通率",
            f"CAST(n_answered_{_w(w)} AS DOUBLE) / NULLIF(n_contacts_{_w(w)}, 0)")
    wmax = p.windows_days[-1]
    add(f"n_distinct_channels_{_w(wmax)}", "engagement", "int", wmax, f"Distinct channels used in the last {wmax} days",
        f"近{wmax}天使用的渠道数",
        " + ".join(f"CASE WHEN n_{ch}_{_w(wmax)} > 0 THEN 1 ELSE 0 END" for ch in p.channels))
    add(f"events_attended_{_w(wmax)}", "engagement", "int", wmax, f"Events attended in the last {wmax} days",
        f"近{wmax}天参加活动次数", f"events_attended_{_w(wmax)}")
    add("in_campaign_holdout", "engagement", "bool", p.holdout_window_days,
        f"In a campaign holdout group in the last {p.holdout_window_days} days",
        f"近{p.holdout_window_days}天在活动对照组", "n_holdout > 0")
    add("opted_out", "engagement", "bool", None, "Has asked not to be contacted (opt-out before the snapshot)",
        "曾要求不再联系", "COALESCE(n_opt_out_ever, 0) > 0")
    # recency over all history
    for key, en, zh in (("contact", "any touch", "任意接触"), ("answered", "an answered touch", "接通"),
                        ("quote", "a quote", "报价"), ("complaint", "a complaint", "投诉")):
        add(f"days_since_last_{key}", "recency", "int", None, f"Days since {en} (null if never)",
            f"距上次{zh}天数(从未则为空)", f"_days(CAST(last_{key}_ts AS DATE))")
    add("open_quote", "recency", "bool", None,
        "A quote not yet followed up (no outbound touch in a later minute) and not yet bought",
        "有未跟进(之后无主动接触)且未成交的报价",
        "last_quote_ts IS NOT NULL AND (last_outbound_ts IS NULL OR last_outbound_ts <= last_quote_ts) "
        "AND (last_issue IS NULL OR last_issue < CAST(last_quote_ts AS DATE))")
    add("open_quote_age_days", "recency", "int", None, "Age of that open quote in days (null if none)",
        "未跟进报价的天数",
        "CASE WHEN last_quote_ts IS NOT NULL AND (last_outbound_ts IS NULL OR last_outbound_ts <= last_quote_ts) "
        "AND (last_issue IS NULL OR last_issue < CAST(last_quote_ts AS DATE)) "
        "THEN _days(CAST(last_quote_ts AS DATE)) END")
    return f


LABELS = {
    "purchase_h": ("int", "A new policy within the horizon", "观察期内新投保"),
    "lapse_h": ("int", "An in-force policy lapses or is surrendered within the horizon (holders only)",
                "观察期内有效保单失效或退保(仅持有人)"),
    "premium_h": ("float", "Annual premium of new policies within the horizon (CNY)", "观察期内新保单年缴保费(元)"),
}
KEYS = ["customer_id", "snapshot_date"]


def dictionary(p: FeatureParams, horizon_days: int) -> list[dict[str, object]]:
    """The feature dictionary: what each column is, in English and Chinese."""
    rows = [{k: v for k, v in asdict(d).items() if k != "sql"} | {"role": "feature"} for d in feature_defs(p)]
    for name, (dtype, en, zh) in LABELS.items():
        rows.append({"name": name, "family": "label", "dtype": dtype, "window_days": horizon_days,
                     "en": en, "zh": zh, "role": "label"})
    return rows


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------
def _lit(d: dt.date) -> str:
    return f"DATE '{d.isoformat()}'"


def _days_between(expr: str, s: str) -> str:
    """Whole days from ``expr`` (a DATE) to the snapshot. Spark: datediff(s, expr)."""
    return f"date_diff('day', {expr}, {s})"


def _minutes_of(expr: str) -> str:
    """Whole minutes from MINUTE_BASE to the TIMESTAMP ``expr``, as a 32-bit INTEGER.

    Spark: ``CAST((unix_timestamp(expr) - unix_timestamp(TIMESTAMP'1900-01-01')) DIV 60 AS INT)``.
    """
    return f"CAST(date_diff('minute', {MINUTE_BASE}, {expr}) AS INTEGER)"


def _timestamp_of_minutes(expr: str) -> str:
    """The TIMESTAMP ``expr`` minutes after MINUTE_BASE. Spark: ``timestampadd(MINUTE, expr, base)``."""
    return f"({MINUTE_BASE} + to_minutes({expr}))"


@dataclass(frozen=True)
class Word:
    """Counters summed as one aggregate: field k counts in bits [PACK_BITS k, PACK_BITS (k + 1))."""

    fields: tuple[str, ...]  # counter names, lowest field first
    increment: str  # SQL: what one row adds to the word


def _per_word() -> int:
    """Fields per 128-bit word (the sign bit stays 0)."""
    return 127 // PACK_BITS


def _per_half() -> int:
    """Fields per 64-bit half of a word (the sign bit stays 0)."""
    return 63 // PACK_BITS


def _chunks(names: list[str]) -> list[list[str]]:
    per = _per_word()
    return [names[i : i + per] for i in range(0, len(names), per)]


def _bit(k: int) -> str:
    return f"(CAST(1 AS {PACK_WORD}) << {PACK_BITS * k})"


def _flag_words(counters: dict[str, str]) -> list[Word]:
    """Counters with conditions of their own (name -> SQL condition): one ``CASE`` per counter and row."""
    return [Word(tuple(names), " + ".join(f"CASE WHEN {counters[n]} THEN {_bit(k)} ELSE 0 END"
                                          for k, n in enumerate(names)))
            for names in _chunks(list(counters))]


def _switch_words(column: str, counters: dict[str, str], guard: str | None = None) -> list[Word]:
    """Counters of the rows whose ``column`` equals a code (name -> code), counted only where ``guard`` holds.

    One ``CASE column WHEN ...`` per word and row instead of one ``CASE`` per counter: a row matches
    at most one code, and evaluating the per-counter conditions was most of a window bucket's cost
    (docs/benchmarks.md).
    """
    words = []
    for names in _chunks(list(counters)):
        case = (f"CASE {column} " + " ".join(f"WHEN '{counters[n]}' THEN {_bit(k)}" for k, n in enumerate(names))
                + " ELSE 0 END")
        words.append(Word(tuple(names), f"CASE WHEN {guard} THEN {case} ELSE 0 END" if guard else case))
    return words


def _word_sums(words: list[Word], prefix: str) -> list[str]:
    """One ``SUM`` per word, named ``{prefix}{q}``."""
    return [f"CAST(SUM({w.increment}) AS {PACK_WORD}) AS {prefix}{q}" for q, w in enumerate(words)]


def _halves(words: list[Word], prefix: str) -> list[str]:
    """Each summed word split into BIGINT halves ``{prefix}{q}h{h}``, right after the aggregate.

    The final join then sums and unpacks 64-bit integers: 128-bit arithmetic over every customer and
    field cost it more than the joins themselves (docs/benchmarks.md). Spark (DECIMAL words):
    ``CAST(pmod(floor(word / 2^(60 h)), 2^60) AS BIGINT)``.
    """
    bits = PACK_BITS * _per_half()
    return [f"CAST(({prefix}{q} >> {bits * h}) & {(1 << bits) - 1} AS BIGINT) AS {prefix}{q}h{h}"
            for q, h in _half_index(words)]


def _half_index(words: list[Word]) -> list[tuple[int, int]]:
    """(word, half) of every half that holds a field."""
    return [(q, h) for q, word in enumerate(words) for h in range(-(-len(word.fields) // _per_half()))]


def _half_names(words: list[Word], prefix: str) -> list[str]:
    return [f"{prefix}{q}h{h}" for q, h in _half_index(words)]


def _unpack(expr: str, position: int, top: bool) -> str:
    """Field ``position`` of a BIGINT half of a packed word, as an INTEGER (a field holds < PACK_LIMIT).

    The lowest field needs no shift and the half's top field (``top``) no mask: nothing lies above it.
    Spark: ``CAST(shiftright(expr, k) & (2^15 - 1) AS INT)``.
    """
    value = f"({expr} >> {PACK_BITS * position})" if position else expr
    return f"CAST({value} AS INTEGER)" if top else f"CAST({value} & {PACK_LIMIT - 1} AS INTEGER)"


def _fields(words: list[Word], column: str) -> dict[str, str]:
    """Each counter's value, unpacked from the half holding it (``column`` with ``{q}``: word and half)."""
    per = _per_half()
    return {name: _unpack(column.format(q=f"{q}h{k // per}"), k % per, k % per == per - 1 or k == len(w.fields) - 1)
            for q, w in enumerate(words) for k, name in enumerate(w.fields)}


def _sample_predicate(fraction: float, column: str = "customer_id") -> str:
    """A stable per-customer sample (the same customers at every training snapshot).

    Decided once per snapshot on the customers' text ids (stable when new customers shift the
    keys); every other table keeps the sampled customers' rows by key (``smp``), so the
    aggregates only ever see those rows. Spark: ``pmod(xxhash64(customer_id), 1000000) < ...``.
    """
    return f"(hash({column} || '#sample') % 1000000) < {int(round(fraction * 1_000_000))}"


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
MINUTE_BASE = "TIMESTAMP '1900-01-01 00:00:00'"
RECENCY = {
    "last_contact": LIVE_SQL,
    "last_answered": ANSWERED_SQL,
    "last_quote": "outcome = 'quote'",
    "last_complaint": "outcome = 'complaint'",
    "last_outbound": f"direction = 'outbound' AND {LIVE_SQL}",
}
REC_AGGS = [f"MAX(minute) FILTER (WHERE {cond}) AS {name}_min" for name, cond in RECENCY.items()] + [
    "COUNT(*) FILTER (WHERE outcome = 'opt_out') AS n_opt_out_ever"]
# Windowed and policy counters are packed eight to a 128-bit integer in fields of PACK_BITS bits and
# summed as one aggregate per word: DuckDB's cost per row grows with the number of aggregates, not with
# their width (docs/benchmarks.md). Eight fields hold the contract's eight channels or eight outcomes
# in one word, counted with one CASE per row (``_switch_words``). A field holds one customer's count
# in one window, so it overflows only past PACK_LIMIT (32,768) touches of one customer in a window,
# or policies of one customer; the stage checks those bounds (``materialise``) instead of trusting
# them. Spark has no 128-bit integer: DECIMAL(38, 0) holds the same 120 bits, packed and unpacked with
# multiplication, division and modulo.
PACK_BITS = 15
PACK_WORD = "HUGEINT"
PACK_LIMIT = 2 ** PACK_BITS


def _aliases(aggs: list[str], table: str) -> list[str]:
    """``table.alias`` for each ``<expression> AS alias``: explicit columns instead of ``* EXCLUDE``."""
    return [f"{table}.{a.rsplit(' AS ', 1)[1].strip()}" for a in aggs]


@dataclass(frozen=True)
class SnapshotQuery:
    """One snapshot's computation: named intermediate relations and the final select over them."""

    parts: list[tuple[str, str]]
    final: Callable[[str], str]  # partition predicate (on ``customer_key``) -> final select
    # (input table, query counting violations, message with {n}) run on the materialised parts by
    # ``materialise``
    checks: tuple[tuple[str, str, str], ...] = ()

    def as_sql(self) -> str:
        """A single portable statement (WITH ... SELECT), e.g. for Spark or small books."""
        return ("WITH " + ",\n".join(f"{name} AS (\n    {body}\n)" for name, body in self.parts) + "\n"
                + self.final("TRUE"))

    def as_script(self, partitions: int = 1, keys: tuple[int, int] = (0, 0)) -> tuple[list[str], list[str]]:
        """(statements materialising each aggregate as a table, final selects per partition).

        Run one at a time, each aggregate has the engine's whole memory budget to itself; as one
        statement they all compete for it and a large book spills or runs out of memory. They are
        temporary tables: kept uncompressed in memory and spilled to the engine's temp directory only
        under pressure (a table in a database file is compressed as it is written, which cost about a
        second per large aggregate at 5M customers). The final
        join is split into ``partitions`` ranges of the customer key (``keys``: its smallest and
        largest value) so that its hash tables stay small; the population is a view, so each range
        reads only its own row groups of the customer file (validate writes it in key order).
        Measurements: docs/benchmarks.md.
        """
        views = {"pol_s", "pop"}  # cheap projections, recomputed where used
        stmts = [f"CREATE OR REPLACE {'VIEW' if name in views else 'TEMP TABLE'} {name} AS {body}"
                 for name, body in self.parts]
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


def materialise(con: object, query: SnapshotQuery, partitions: int = 1) -> list[str]:
    """Run ``query``'s staged script and bound checks on ``con``; return its final selects.

    What the features stage, the benchmark and the tests all run, so none of them can skip a check.
    """
    keys = (0, 0)
    if partitions > 1:
        lo, hi = con.execute("SELECT MIN(customer_key), MAX(customer_key) FROM customers").fetchall()[0]  # type: ignore[attr-defined]
        keys = (lo or 0, hi or 0)
    stmts, finals = query.as_script(partitions, keys)
    for stmt in stmts:
        con.execute(stmt)  # type: ignore[attr-defined]
    for table, sql, message in query.checks:
        n = con.execute(sql).fetchall()[0][0]  # type: ignore[attr-defined]
        if n:
            raise FeatureBoundError(table, message.format(n=f"{n:,}"))
    return finals


def snapshot_query(p: FeatureParams, s: dt.date, horizon_days: int, labels_known: bool,
                   sample_fraction: float | None = None) -> SnapshotQuery:
    """The computation for one snapshot, as named parts (see ``SnapshotQuery``)."""
    S = _lit(s)
    cmax = p.claim_windows_days[-1]
    end_h = f"({S} + INTERVAL '{horizon_days}' DAY)"
    defs = feature_defs(p)

    def days(expr: str) -> str:
        return _days_between(expr, S)

    # Windowed counts: each contact row falls in exactly one disjoint bucket
    # j = [s - bounds[j+1], s - bounds[j]), the bounds being the windows and the holdout window; each
    # bucket is its own aggregate over a plain time range of the contacts, and a window is the sum of
    # the buckets inside it. A time-range predicate lets the scan
    # skip whole row groups of a time-ordered file (validate writes contacts month by month), so every
    # bucket reads only its own slice of the history. Everything else (holdout, channel, outcome) sits
    # in the aggregates' conditions: rows dropped by WHERE reach the hash aggregate as a selection,
    # which DuckDB groups several times slower than whole chunks (docs/benchmarks.md).
    # The counters are packed (see PACK_BITS): a bucket aggregate is one packed sum per word (channels,
    # outcomes, the rest) plus its row count for the bound check; inbound and answered touches follow
    # from the contract's invariants.
    outcomes = {f"n_{o}": o for o in dict.fromkeys([*p.outcomes, "no_answer"])}
    words = [*_switch_words("channel", {f"n_{ch}": ch for ch in p.channels}, guard=LIVE_SQL),
             *_switch_words("outcome", outcomes),
             *_flag_words({"n_contacts": LIVE_SQL, "n_outbound": f"direction = 'outbound' AND {LIVE_SQL}",
                           "events_attended": f"channel = 'event' AND {ANSWERED_SQL}", "n_holdout": "holdout"})]
    bucket_aggs = ", ".join([*_word_sums(words, "word"), "COUNT(*) AS n_rows"])
    bounds = sorted({0, *p.windows_days, p.holdout_window_days})
    sums, win_cols = [], []
    for w in sorted({*p.windows_days, p.holdout_window_days}):
        inside = [j for j in range(len(bounds) - 1) if bounds[j + 1] <= w]
        for name in _half_names(words, "word"):
            sums.append(" + ".join(f"COALESCE(w{j}.{name}, 0)" for j in inside) + f" AS {name}_{_w(w)}")
        field = _fields(words, "word{q}_" + _w(w))
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
    rec_cols = [f"{_timestamp_of_minutes(f'rec.{name}_min')} AS {name}_ts" for name in RECENCY] + ["rec.n_opt_out_ever"]

    # Policy counts are packed like the window counts; n_policies_ever bounds every one of them.
    pol_counts = {"n_inforce": "inforce", "n_inforce_monthly": "inforce AND payment_mode = 'monthly'",
                  "n_lapsed": f"lapse_date < {S}", "n_surrendered": f"surrender_date < {S}",
                  "n_matured": f"maturity_date < {S} AND end_date = maturity_date"}
    pol_words = [*_flag_words(pol_counts),
                 *_switch_words("product_line", {f"n_inforce_{ln}": ln for ln in p.product_lines}, guard="inforce")]
    pol_sums = [
        "COUNT(*) AS n_policies_ever",
        "SUM(annual_premium) FILTER (WHERE inforce) AS premium_inforce",
        "COALESCE(SUM(sum_assured) FILTER (WHERE inforce), 0) AS sum_assured_inforce",
        "MIN(issue_date) AS first_issue",
        "MAX(issue_date) AS last_issue",
        f"MAX(GREATEST(CASE WHEN lapse_date < {S} THEN lapse_date END, "
        f"CASE WHEN surrender_date < {S} THEN surrender_date END)) AS last_lapse",
    ]
    pol_sums += [f"SUM(annual_premium) FILTER (WHERE inforce AND product_line = '{ln}') AS premium_inforce_{ln}"
                 for ln in p.product_lines]
    pol_aggs = [*_word_sums(pol_words, "pword"), *pol_sums]
    pol_cols = ([f"{v} AS {k}" for k, v in _fields(pol_words, "pol.pword{q}").items()]
                + _aliases(pol_sums, "pol"))

    clm_aggs = []
    for w in p.claim_windows_days:
        inw = f"claim_date >= CAST({S} - INTERVAL '{w}' DAY AS DATE)"
        clm_aggs.append(f"COUNT(*) FILTER (WHERE {inw}) AS n_claims_{_w(w)}")
        clm_aggs.append(f"SUM(amount) FILTER (WHERE {inw}) AS claim_amount_{_w(w)}")
    clm_aggs.append(f"COUNT(*) FILTER (WHERE status = 'rejected') AS n_claims_rejected_{_w(cmax)}")

    if labels_known:
        lab = f"""SELECT customer_key,
            CASE WHEN COUNT(*) FILTER (WHERE issue_date >= {S}) > 0 THEN 1 ELSE 0 END AS purchase_h,
            COALESCE(SUM(annual_premium) FILTER (WHERE issue_date >= {S}), 0) AS premium_h,
            COUNT(*) FILTER (WHERE inforce) AS held,
            COUNT(*) FILTER (WHERE inforce AND ((lapse_date >= {S} AND lapse_date < {end_h})
                                                OR (surrender_date >= {S} AND surrender_date < {end_h}))) AS lapsed
        FROM pol_s WHERE issue_date < {end_h}
        GROUP BY customer_key"""
        lab_cols = ("COALESCE(lab.purchase_h, 0) AS purchase_h, "
                    "CASE WHEN lab.held > 0 THEN CASE WHEN lab.lapsed > 0 THEN 1 ELSE 0 END END AS lapse_h, "
                    "CAST(COALESCE(lab.premium_h, 0) AS DOUBLE) AS premium_h")
    else:
        lab = ""
        lab_cols = ("CAST(NULL AS INTEGER) AS purchase_h, CAST(NULL AS INTEGER) AS lapse_h, "
                    "CAST(NULL AS DOUBLE) AS premium_h")

    # A key semi-join, not the hash of every row's text id: hashing 100M contact ids per snapshot cost
    # more than the sample saved (docs/benchmarks.md).
    def sample(column: str = "customer_key") -> str:
        return f" AND {column} IN (SELECT customer_key FROM smp)" if sample_fraction is not None else ""

    select = []
    for d in defs:
        expr = d.sql.replace("_days(", "__DAYS__(")
        # _days(x) -> date_diff('day', x, s); done by hand to keep the declarations dialect-free
        while "__DAYS__(" in expr:
            i = expr.index("__DAYS__(") + len("__DAYS__(")
            depth, j = 1, i
            while depth:
                depth += {"(": 1, ")": -1}.get(expr[j], 0)
                j += 1
            expr = expr[: expr.index("__DAYS__(")] + days(expr[i : j - 1]) + expr[j:]
        cast = {"int": "INTEGER", "float": "DOUBLE", "category": "VARCHAR", "bool": "BOOLEAN"}[d.dtype]
        select.append(f"CAST({expr} AS {cast}) AS {d.name}")

    # The heavy contact aggregates come first: run while the engine's memory holds no other intermediate
    # table, they do not spill (docs/benchmarks.md).
    contact_parts = [] if sample_fraction is None else [
        ("smp", f"SELECT customer_key FROM customers WHERE {_sample_predicate(sample_fraction)}")]
    contact_parts += [
        ("rec", f"""SELECT customer_key, {', '.join(REC_AGGS)}
    FROM (SELECT customer_key, {_minutes_of("contact_ts")} AS minute, outcome, direction
          FROM contacts WHERE contact_ts < {S}{sample()}) c
    GROUP BY customer_key"""),
    ]
    contact_parts += [(f"w{j}", f"""SELECT customer_key, {', '.join(_halves(words, "word"))}, n_rows FROM (
    SELECT customer_key, {bucket_aggs}
    FROM contacts WHERE contact_ts >= {S} - INTERVAL '{bounds[j + 1]}' DAY
                    AND contact_ts < {S} - INTERVAL '{bounds[j]}' DAY{sample()}
    GROUP BY customer_key) b""") for j in range(len(bounds) - 1)]
    parts = [
        *contact_parts,
        ("pop", f"SELECT {', '.join(POP_COLUMNS)} FROM customers WHERE created_date < {S}{sample()}"),
        ("pol_s", f"""SELECT *, (issue_date < {S} AND (end_date IS NULL OR end_date >= {S})) AS inforce
    FROM (SELECT customer_id, customer_key, product_line, issue_date, lapse_date, surrender_date, maturity_date,
                 annual_premium, sum_assured, payment_mode, LEAST(lapse_date, surrender_date, maturity_date) AS end_date
          FROM policies WHERE TRUE{sample()}) p"""),
        ("pol", f"""SELECT customer_key, {', '.join(_halves(pol_words, "pword") + _aliases(pol_sums, "p"))} FROM (
    SELECT customer_key, {', '.join(pol_aggs)} FROM pol_s WHERE issue_date < {S} GROUP BY customer_key) p"""),
        ("main_mode", """SELECT customer_key, payment_mode AS main_payment_mode FROM (
        SELECT customer_key, payment_mode,
               ROW_NUMBER() OVER (PARTITION BY customer_key
                                  ORDER BY annual_premium DESC, issue_date, payment_mode) AS rk
        FROM pol_s WHERE inforce) m
    WHERE rk = 1"""),
        ("clm", f"""SELECT customer_key, {', '.join(clm_aggs)}
    FROM claims WHERE claim_date < {S} AND claim_date >= CAST({S} - INTERVAL '{cmax}' DAY AS DATE){sample()}
    GROUP BY customer_key"""),
        ("refs", f"""SELECT referred_by_key AS customer_key, COUNT(*) AS referrals_made
    FROM customers WHERE created_date < {S} AND referred_by_key IS NOT NULL{sample("referred_by_key")}
    GROUP BY referred_by_key"""),
    ]
    if lab:
        parts.append(("lab", lab))

    def final(pf: str) -> str:
        """The final select over the customers satisfying ``pf`` (every relation is filtered alike)."""

        def rel(name: str) -> str:
            return f"(SELECT * FROM {name} WHERE {pf})"

        joins = "\n    ".join(
            f"LEFT JOIN {rel(n)} {n} ON {n}.customer_key = pop.customer_key"
            for n in ("pol", "main_mode", "clm", "refs", "rec", *(f"w{j}" for j in range(len(bounds) - 1))))
        lab_join = f"LEFT JOIN {rel('lab')} lab ON lab.customer_key = j.customer_key" if lab else ""
        return f"""SELECT j.customer_id, {S} AS snapshot_date,
    {(","+chr(10)+"    ").join(select)},
    {lab_cols}
FROM (
    -- window counts unpacked from the summed counter words
    SELECT j0.*, {", ".join(win_cols)}
    FROM (
        -- one streaming pass of the population through narrow per-customer relations
        SELECT {", ".join(f"pop.{c}" for c in POP_COLUMNS)},
            {", ".join(pol_cols)}, main_mode.main_payment_mode,
            {", ".join(_aliases(clm_aggs, "clm"))}, refs.referrals_made,
            {", ".join(rec_cols)},
            {", ".join(sums)}
        FROM {rel("pop")} pop
        {joins}
    ) j0
) j
{lab_join}"""

    # Packed fields cannot overflow while every bucket's rows stay under an equal share of PACK_LIMIT.
    share = PACK_LIMIT // (len(bounds) - 1)
    checks = [("policies", f"SELECT COUNT(*) FROM pol WHERE n_policies_ever >= {PACK_LIMIT}",
               f"policies: {{n}} customer(s) hold {PACK_LIMIT:,} or more policies before the snapshot {s}; policy "
               "counts are packed with room for fewer. Look for runaway or duplicated rows in the policy table.")]
    checks += [("contacts", f"SELECT COUNT(*) FROM w{j} WHERE n_rows >= {share}",
                f"contacts: {{n}} customer(s) have {share:,} or more contact rows between {bounds[j + 1]} and "
                f"{bounds[j]} days before the snapshot {s}; window counts are packed with room for "
                f"{PACK_LIMIT - 1:,} per customer and window. No real contact rate comes near that: look for "
                "runaway or duplicated rows in the contact history.") for j in range(len(bounds) - 1)]
    return SnapshotQuery(parts, final, tuple(checks))


# ---------------------------------------------------------------------------------------------
# Snapshot plan and execution
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    date: dt.date
    labels_known: bool  # the horizon [date, date + H) ended on or before as-of
    scoring: bool


def snapshot_plan(as_of: dt.date, p: FeatureParams, horizon_days: int, history_start: dt.date | None = None) \
        -> list[Snapshot]:
    """Monthly snapshots back from ``as_of`` (oldest first); ``as_of`` itself is the scoring snapshot.

    Snapshots earlier than one longest window after ``history_start`` are dropped: their windowed
    counts would be truncated by the start of the data, not by the customer's behaviour.
    """
    out = []
    for k in range(p.n_train_snapshots, -1, -1):
        s = (pd.Timestamp(as_of) - pd.DateOffset(months=k * p.snapshot_step_months)).date()
        if history_start is not None and k and s < history_start + dt.timedelta(days=p.windows_days[-1]):
            continue
        out.append(Snapshot(s, labels_known=s + dt.timedelta(days=horizon_days) <= as_of, scoring=k == 0))
    return out


def sample_fraction(p: FeatureParams, n_customers: int) -> float | None:
    """Share of customers kept at training snapshots (None = all).

    Why sampling rather than reusing work: each snapshot's windows cover a different stretch of the
    history, so a per-snapshot scan of the events inside the longest window is already the minimum
    work per snapshot; what grows with the book is the number of customers. Keeping the same stable
    sample of customers at every training snapshot bounds the training cost for any book size while
    the scoring snapshot always covers everyone.
    """
    if p.train_sample_max_customers and n_customers > p.train_sample_max_customers:
        return p.train_sample_max_customers / n_customers
    return None


def features_frame(con: object, p: FeatureParams, plan: Iterable[Snapshot], horizon_days: int,
                   n_customers: int = 0, partitions: int = 1) -> pd.DataFrame:
    """Execute the plan on ``con`` (a DuckDB connection) and return one DataFrame (small books, tests)."""
    frac = sample_fraction(p, n_customers)
    out = []
    for snap in plan:
        finals = materialise(con, snapshot_query(p, snap.date, horizon_days, snap.labels_known,
                                                 None if snap.scoring else frac), partitions)
        out += [con.execute(f).df() for f in finals]  # type: ignore[attr-defined]
    return pd.concat(out, ignore_index=True)
