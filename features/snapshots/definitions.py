"""What the snapshot features are: each declared once, with its family, window, type, a one-line
description in English and Chinese, and its SQL expression over the joined snapshot relation.

The SQL (``features.snapshots.query``), the feature dictionary and ``docs/features.md`` all come from this
list. The expressions are dialect-free: the one engine-specific piece, whole days from a date to the snapshot,
is a function the builder passes in (an expression that needs it is declared as ``lambda days: ...``), so no
expression is parsed or rewritten after it is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.intake.contract import CHANNELS, OUTCOMES, PRODUCT_LINES, TABLES

Days = Callable[[str], str]  # a date expression -> whole days from it to the snapshot, in SQL

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
    # expression over the joined snapshot relation (see snapshot_query); one that needs whole days from a date to
    # the snapshot takes the dialect's function for it
    sql: str | Callable[[Days], str]

    def expression(self, days: Days) -> str:
        """The SQL expression, with ``days(x)`` written by the caller (the engine's dialect)."""
        return self.sql(days) if callable(self.sql) else self.sql


def _w(w: int) -> str:
    return f"{w}d"


# ---------------------------------------------------------------------------------------------
# Feature declarations
# ---------------------------------------------------------------------------------------------
class _Add(Protocol):
    def __call__(self, *a: object) -> None: ...


def _profile(p: FeatureParams, add: _Add) -> None:
    """Slowly-changing archive fields, used as they are."""
    add("age_years", "profile", "float", None, "Age in years", "年龄(岁)",
        lambda days: f"CAST({days('birth_date')} AS DOUBLE) / 365.25")
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
        lambda days: f"CAST(FLOOR({days('created_date')} / {MONTH_DAYS}) AS INTEGER)")
    add("was_referred", "profile", "bool", None, "Came through a referral", "转介绍获客",
        "referred_by IS NOT NULL")
    add("has_agent", "profile", "bool", None, "Has a servicing agent (not an orphan account)", "有服务代理人(非孤儿单)",
        "agent_id IS NOT NULL")


def _holdings(p: FeatureParams, add: _Add) -> None:
    """Holdings at the snapshot, re-derived from the policy events."""
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
        lambda days: f"CAST(FLOOR({days('first_issue')} / {MONTH_DAYS}) AS INTEGER)")
    add("months_since_last_purchase", "holdings", "int", None, "Months since the last new policy", "距上次投保月数",
        lambda days: f"CAST(FLOOR({days('last_issue')} / {MONTH_DAYS}) AS INTEGER)")
    add("months_since_last_lapse", "holdings", "int", None, "Months since the last lapse or surrender",
        "距上次失效/退保月数", lambda days: f"CAST(FLOOR({days('last_lapse')} / {MONTH_DAYS}) AS INTEGER)")


def _claims_referrals(p: FeatureParams, add: _Add) -> None:
    """Claims in their windows; referrals made."""
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


def _contacts(p: FeatureParams, add: _Add) -> None:
    """Touches per channel and window, totals and outcomes."""
    ch_zh, out_zh = CHANNELS, OUTCOMES
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


def _engagement(p: FeatureParams, add: _Add) -> None:
    """Engagement over the longest window, holdout membership, opt-out."""
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


def _recency(p: FeatureParams, add: _Add) -> None:
    """Recency over all history, and open quotes."""
    for key, en, zh in (("contact", "any touch", "任意接触"), ("answered", "an answered touch", "接通"),
                        ("quote", "a quote", "报价"), ("complaint", "a complaint", "投诉")):
        add(f"days_since_last_{key}", "recency", "int", None, f"Days since {en} (null if never)",
            f"距上次{zh}天数(从未则为空)", lambda days, key=key: days(f"CAST(last_{key}_ts AS DATE)"))
    add("open_quote", "recency", "bool", None,
        "A quote not yet followed up (no outbound touch in a later minute) and not yet bought",
        "有未跟进(之后无主动接触)且未成交的报价",
        "last_quote_ts IS NOT NULL AND (last_outbound_ts IS NULL OR last_outbound_ts <= last_quote_ts) "
        "AND (last_issue IS NULL OR last_issue < CAST(last_quote_ts AS DATE))")
    add("open_quote_age_days", "recency", "int", None, "Age of that open quote in days (null if none)",
        "未跟进报价的天数",
        lambda days: "CASE WHEN last_quote_ts IS NOT NULL AND (last_outbound_ts IS NULL OR last_outbound_ts <= "
        "last_quote_ts) AND (last_issue IS NULL OR last_issue < CAST(last_quote_ts AS DATE)) "
        f"THEN {days('CAST(last_quote_ts AS DATE)')} END")


def feature_defs(p: FeatureParams) -> list[FeatureDef]:
    """All features, in output order, for these parameters."""
    f: list[FeatureDef] = []

    def add(*a: object) -> None:
        f.append(FeatureDef(*a))  # type: ignore[arg-type]

    for family in (_profile, _holdings, _claims_referrals, _contacts, _engagement, _recency):
        family(p, add)
    return f



LABELS = {
    "purchase_h": ("int", "A new policy within the horizon", "观察期内新投保"),
    "lapse_h": ("int", "An in-force policy lapses or is surrendered within the horizon (holders only)",
                "观察期内有效保单失效或退保(仅持有人)"),
    "premium_h": ("float", "Annual premium of new policies within the horizon (CNY)", "观察期内新保单年缴保费(元)"),
}
KEYS = ["customer_id", "snapshot_date"]
# The feature table's row order: snapshot by snapshot, customers in id order within each. Each snapshot is
# written in that order (its partitions are customer-key ranges, and the key is the rank of the id), so the
# table is its snapshots one after another: no sort of the whole table (22 of a monthly re-run's 63 s at 5M).
ROW_ORDER = ["snapshot_date", "customer_id"]


def dictionary(p: FeatureParams, horizon_days: int) -> list[dict[str, object]]:
    """The feature dictionary: what each column is, in English and Chinese."""
    rows = [{k: v for k, v in asdict(d).items() if k != "sql"} | {"role": "feature"} for d in feature_defs(p)]
    for name, (dtype, en, zh) in LABELS.items():
        rows.append({"name": name, "family": "label", "dtype": dtype, "window_days": horizon_days,
                     "en": en, "zh": zh, "role": "label"})
    return rows
