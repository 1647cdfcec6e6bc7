"""The data contract for the raw input tables.

One declaration drives three things so they can never disagree: the pandera schemas that
enforce the contract, the list of personal columns that the validate stage drops, and the
generated reference page ``docs/data_contract.md``.

Codes are English snake_case; the Chinese business names are kept beside them for the docs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Dtype = Literal["string", "int", "float", "date", "timestamp", "bool"]

# ---------------------------------------------------------------------------------------------
# Enumerations (code -> Chinese name). Order matters where the enum is ordinal.
# ---------------------------------------------------------------------------------------------
GENDERS = {"F": "女", "M": "男"}
INCOME_BANDS = {  # ordinal, low to high (annual household income, CNY)
    "lt_100k": "10万以下",
    "100k_200k": "10-20万",
    "200k_500k": "20-50万",
    "500k_1m": "50-100万",
    "gt_1m": "100万以上",
}
MARITAL_STATUSES = {"single": "未婚", "married": "已婚", "divorced": "离异", "widowed": "丧偶"}
NEEDS_CLASSES = {
    "family": "家庭类",
    "professional": "职业类(高收入)",
    "elderly": "老年类",
    "sme": "中小企业类",
}
ACQUISITION_SOURCES = {
    "personal_network": "缘故",
    "bank_branch": "银行承保客户",
    "company_existing": "公司老客户",
    "cold_visit": "陌生拜访",
    "referral": "转介绍",
    "event": "活动获客",
    "purchased_list": "购买/交换名单",
}
PRODUCT_LINES = {
    "life": "寿险",
    "critical_illness": "重疾险",
    "medical": "医疗险",
    "accident": "意外险",
    "annuity": "年金险",
    "education": "教育金",
}
POLICY_STATUSES = {"in_force": "有效", "lapsed": "失效", "surrendered": "退保", "matured": "满期"}
PAYMENT_MODES = {
    "annual": "年缴",
    "semiannual": "半年缴",
    "quarterly": "季缴",
    "monthly": "月缴",
    "single": "趸缴",
}
CLAIM_STATUSES = {"paid": "已赔付", "rejected": "拒赔", "pending": "处理中"}
CHANNELS = {
    "phone": "电话",
    "sms": "短信",
    "wechat": "微信",
    "email": "电子邮件",
    "letter": "信函",
    "visit": "拜访",
    "event": "活动(联谊会/产说会)",
    "service": "服务接触",
}
DIRECTIONS = {"outbound": "主动接触", "inbound": "客户来访/来电"}
PURPOSES = {
    "sales": "销售",
    "quote_followup": "报价跟进",
    "service": "服务",
    "renewal": "续期提醒",
    "claim": "理赔协助",
    "event_invite": "活动邀约",
    "care": "关怀(节日/生日)",
}
OUTCOMES = {  # the ladder of a touch's result, plus the two negative outcomes
    "no_answer": "未接通",
    "reached": "已接通",
    "interested": "有兴趣",
    "quote": "已报价",
    "appointment": "已约访",
    "purchase": "已成交",
    "complaint": "投诉",
    "opt_out": "拒绝再联系",
}


class ContractError(ValueError):
    """The input breaks the contract at table level (e.g. a required column is missing).

    Defined here, beside the contract and free of pandera, so that every stage's command line can catch it
    without importing the validation machinery (about a second per stage)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the contract."""

    name: str
    dtype: Dtype
    meaning: str
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    personal: bool = False
    not_after_as_of: bool = False  # event dates must not lie after the extract's as-of date
    regex: str | None = None


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    ref_column: str


@dataclass(frozen=True)
class TableSpec:
    """One raw table: columns, primary key, foreign keys and the event-duplicate key."""

    name: str
    meaning: str
    key: str
    columns: tuple[ColumnSpec, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    # Rows equal on these columns (other than the key) describe the same real-world event.
    duplicate_event_key: tuple[str, ...] = ()
    required: bool = True
    row_rules: tuple[str, ...] = field(default=())  # names of cross-column rules, see RULE_TEXT
    # Order of the validated (interim) file; "<column>:month" sorts by that timestamp's month.
    # Contacts are written month by month (so the features stage's time-range scans skip whole row
    # groups outside each window) and by customer within a month (so its per-customer aggregates
    # see each customer's rows together); docs/benchmarks.md has the measurements.
    order_by: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def personal_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.personal]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _enum(d: dict[str, str]) -> tuple[str, ...]:
    return tuple(d)


CUSTOMERS = TableSpec(
    name="customers",
    meaning="Customer archive (客户档案): one row per customer or prospect, current state at extract time.",
    key="customer_id",
    columns=(
        ColumnSpec("customer_id", "string", "Customer key", regex=r"^\S+$"),
        ColumnSpec("created_date", "date", "Date the customer record was created", not_after_as_of=True),
        ColumnSpec("birth_date", "date", "Date of birth (age 18-100 at as-of)", not_after_as_of=True),
        ColumnSpec("gender", "string", "Gender", allowed=_enum(GENDERS)),
        ColumnSpec("province", "string", "Province of residence", nullable=True),
        ColumnSpec("city", "string", "City of residence", nullable=True),
        ColumnSpec(
            "occupation_class", "int", "Occupational risk class 1 (office) to 6 (hazardous)",
            nullable=True, min_value=1, max_value=6,
        ),
        ColumnSpec("income_band", "string", "Household income band", nullable=True,
                   allowed=_enum(INCOME_BANDS)),
        ColumnSpec("marital_status", "string", "Marital status", nullable=True,
                   allowed=_enum(MARITAL_STATUSES)),
        ColumnSpec("children", "int", "Number of children", nullable=True, min_value=0, max_value=15),
        ColumnSpec("needs_class", "string", "Needs class (客户需求分类)", allowed=_enum(NEEDS_CLASSES)),
        ColumnSpec("acquisition_source", "string", "How the customer was acquired (获客来源)",
                   allowed=_enum(ACQUISITION_SOURCES)),
        ColumnSpec("referred_by", "string", "customer_id of the referrer when source is referral",
                   nullable=True),
        ColumnSpec("first_policy_date", "date", "Issue date of the first policy; null for prospects",
                   nullable=True, not_after_as_of=True),
        ColumnSpec("agent_id", "string", "Servicing agent; null for orphan accounts (孤儿单)", nullable=True),
        ColumnSpec("do_not_call", "bool", "Customer refused phone contact (consent flag)"),
        ColumnSpec("do_not_sms", "bool", "Customer refused SMS contact (consent flag)"),
        ColumnSpec("name", "string", "Full name", nullable=True, personal=True),
        ColumnSpec("phone", "string", "Mobile phone number", nullable=True, personal=True),
        ColumnSpec("id_number", "string", "National ID number (身份证号)", nullable=True, personal=True),
    ),
    foreign_keys=(ForeignKey("referred_by", "customers", "customer_id"),),
    row_rules=("birth_before_first_policy",),
    order_by=("customer_id",),  # = customer_key order: the features stage reads key ranges
)

POLICIES = TableSpec(
    name="policies",
    meaning="Policies (保单): one row per policy, with its current status and status dates.",
    key="policy_id",
    columns=(
        ColumnSpec("policy_id", "string", "Policy key", regex=r"^\S+$"),
        ColumnSpec("customer_id", "string", "Policyholder"),
        ColumnSpec("product_line", "string", "Product line (险种)", allowed=_enum(PRODUCT_LINES)),
        ColumnSpec("issue_date", "date", "Issue (effective) date", not_after_as_of=True),
        ColumnSpec("status", "string", "Current status", allowed=_enum(POLICY_STATUSES)),
        ColumnSpec("lapse_date", "date", "Date the policy lapsed (status lapsed)", nullable=True,
                   not_after_as_of=True),
        ColumnSpec("surrender_date", "date", "Date the policy was surrendered (status surrendered)",
                   nullable=True, not_after_as_of=True),
        ColumnSpec("maturity_date", "date", "Scheduled end of term; null for whole-life cover",
                   nullable=True),
        ColumnSpec("annual_premium", "float", "Annualised premium, CNY", min_value=0.01, max_value=1e8),
        ColumnSpec("sum_assured", "float", "Sum assured, CNY", nullable=True, min_value=0, max_value=1e10),
        ColumnSpec("payment_mode", "string", "Premium payment mode", allowed=_enum(PAYMENT_MODES)),
    ),
    foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
    row_rules=("status_dates_consistent", "dates_after_issue"),
)

CLAIMS = TableSpec(
    name="claims",
    meaning="Claims (理赔): one row per claim.",
    key="claim_id",
    required=False,
    columns=(
        ColumnSpec("claim_id", "string", "Claim key", regex=r"^\S+$"),
        ColumnSpec("policy_id", "string", "Policy claimed on"),
        ColumnSpec("customer_id", "string", "Claimant (policyholder)"),
        ColumnSpec("claim_date", "date", "Date the claim was reported", not_after_as_of=True),
        ColumnSpec("amount", "float", "Amount claimed, CNY", min_value=0, max_value=1e9),
        ColumnSpec("status", "string", "Claim status", allowed=_enum(CLAIM_STATUSES)),
    ),
    foreign_keys=(
        ForeignKey("customer_id", "customers", "customer_id"),
        ForeignKey("policy_id", "policies", "policy_id"),
    ),
)

CONTACTS = TableSpec(
    name="contacts",
    meaning=(
        "Contact history (接触记录): one row per touch. Campaign holdout members appear with "
        "holdout=true and no outcome: selected for the campaign and deliberately not contacted."
    ),
    key="contact_id",
    columns=(
        ColumnSpec("contact_id", "string", "Contact key", regex=r"^\S+$"),
        ColumnSpec("customer_id", "string", "Customer touched"),
        ColumnSpec("contact_ts", "timestamp", "When the touch happened (local time)", not_after_as_of=True),
        ColumnSpec("channel", "string", "Channel", allowed=_enum(CHANNELS)),
        ColumnSpec("direction", "string", "Who initiated it", allowed=_enum(DIRECTIONS)),
        ColumnSpec("purpose", "string", "Why", allowed=_enum(PURPOSES)),
        ColumnSpec("outcome", "string", "Result of the touch; null only for holdout rows", nullable=True,
                   allowed=_enum(OUTCOMES)),
        ColumnSpec("duration_sec", "float", "Talk or meeting time, seconds; null where not applicable",
                   nullable=True, min_value=0, max_value=86400),
        ColumnSpec("agent_id", "string", "Agent who made or took the touch", nullable=True),
        ColumnSpec("campaign_id", "string", "Campaign the touch belongs to", nullable=True),
        ColumnSpec("holdout", "bool", "Selected into the campaign's random holdout (not contacted)"),
    ),
    foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
    duplicate_event_key=("customer_id", "contact_ts", "channel", "direction", "purpose", "outcome"),
    row_rules=("holdout_has_no_outcome",),
    order_by=("contact_ts:month", "customer_id", "contact_ts", "contact_id"),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (CUSTOMERS, POLICIES, CLAIMS, CONTACTS)}
# Validation order: a table's foreign keys point only at tables validated before it.
TABLE_ORDER: tuple[str, ...] = ("customers", "policies", "claims", "contacts")

RULE_TEXT: dict[str, str] = {
    "missing": "value is null but the column is required",
    "type": "value cannot be parsed as the column's type",
    "allowed_values": "value is not one of the allowed codes",
    "range": "value is outside the allowed range",
    "pattern": "value does not match the key pattern (no blanks)",
    "future_date": "date lies after the as-of date",
    "duplicate_key": "key already used by an earlier row (first occurrence kept)",
    "duplicate_event": "same customer, time, channel, direction, purpose and outcome as an earlier row",
    "orphan_reference": "points at a row that does not exist (or was itself rejected)",
    "birth_before_first_policy": "first_policy_date is before birth_date, or age at as-of is not 18-100",
    "status_dates_consistent": (
        "status and status dates disagree (lapsed needs lapse_date, surrendered needs surrender_date, "
        "matured needs maturity_date on or before as-of, in_force needs no lapse or surrender date "
        "and no maturity before as-of)"
    ),
    "dates_after_issue": "lapse, surrender or maturity date is before the issue date",
    "holdout_has_no_outcome": "holdout rows must have no outcome and other rows must have one",
    "control_character": "text holds a control character (a NUL byte or similar from a broken export)",
    "placeholder_key": "a key spelled as a placeholder (NULL, NaN, None, -, N/A): not a real key",
    "mixed_timezone": "a timestamp's UTC offset differs from the rest of its column (no guess is made)",
    "issued_before_birth": "the policy's issue date is before its holder's birth date",
}

AGE_MIN, AGE_MAX = 18, 100


def personal_columns() -> dict[str, list[str]]:
    """Personal columns per table: they are dropped at validation and never reach features."""
    return {name: t.personal_columns for name, t in TABLES.items() if t.personal_columns}


def render_markdown() -> str:
    """Render the contract as the reference page ``docs/data_contract.md``."""
    enum_names = {
        _enum(GENDERS): GENDERS, _enum(INCOME_BANDS): INCOME_BANDS, _enum(MARITAL_STATUSES): MARITAL_STATUSES,
        _enum(NEEDS_CLASSES): NEEDS_CLASSES, _enum(ACQUISITION_SOURCES): ACQUISITION_SOURCES,
        _enum(PRODUCT_LINES): PRODUCT_LINES, _enum(POLICY_STATUSES): POLICY_STATUSES,
        _enum(PAYMENT_MODES): PAYMENT_MODES, _enum(CLAIM_STATUSES): CLAIM_STATUSES, _enum(CHANNELS): CHANNELS,
        _enum(DIRECTIONS): DIRECTIONS, _enum(PURPOSES): PURPOSES, _enum(OUTCOMES): OUTCOMES,
    }
    lines = [
        "# Data contract for the raw input tables",
        "",
        "<!-- Generated from features/intake/contract.py by `python -m pipelines.docs`; do not edit by hand. "
        "A test fails when this page and the code disagree. -->",
        "",
        "Every source (the synthetic book, your own exports) must arrive as these four tables. The "
        "`validate` stage enforces the contract row by row: rejected rows go to "
        "`data/interim/quarantine/<table>.parquet` with a `reject_rule` and `reject_column`, accepted "
        "rows go on with the personal columns removed, and `data/reports/validation.json` reconciles "
        "the counts (input = accepted + quarantined, per table and rule). Accepted rows also gain "
        "`customer_key` (and customers `referred_by_key`): the customer's dense rank by `customer_id` in "
        "this run, an integer the feature SQL groups and joins on; it is internal and never exported.",
        "",
        "Types: `string`; `int`; `float`; `date` (ISO `YYYY-MM-DD`); `timestamp` (ISO "
        "`YYYY-MM-DD HH:MM:SS`, local time); `bool` (`true`/`false`, `1`/`0`, `yes`/`no`).",
        "",
        "**Personal data** (marked *yes*) is protected by PIPL: it is read only to be dropped by "
        "`validate` and never reaches features, logs, MLflow or exports.",
        "",
    ]
    for name in TABLE_ORDER:
        t = TABLES[name]
        lines += [f"## `{t.name}`", "", t.meaning, "",
                  f"Key: `{t.key}` (unique). Required table: {'yes' if t.required else 'no'}."]
        for fk in t.foreign_keys:
            lines.append(f"Foreign key: `{fk.column}` → `{fk.table}.{fk.ref_column}`.")
        if t.duplicate_event_key:
            lines.append("Duplicate event: rows equal on " + ", ".join(f"`{c}`" for c in t.duplicate_event_key)
                         + " (the later copies are quarantined).")
        if t.row_rules:
            lines.append("Row rules: " + "; ".join(f"`{r}`: {RULE_TEXT[r]}" for r in t.row_rules) + ".")
        if t.order_by:
            keys = [f"month of `{c[:-6]}`" if c.endswith(":month") else f"`{c}`" for c in t.order_by]
            lines.append("The validated file is written ordered by " + ", ".join(keys)
                         + " (the input may come in any order).")
        lines += ["", "| column | type | nullable | allowed values | meaning | personal |",
                  "|---|---|---|---|---|---|"]
        for c in t.columns:
            if c.allowed is not None:
                names = enum_names.get(c.allowed, {})
                allowed = ", ".join(f"`{a}` {names.get(a, '')}".strip() for a in c.allowed)
            elif c.min_value is not None or c.max_value is not None:
                allowed = f"{c.min_value:g} … {c.max_value:g}" if c.max_value is not None else f"≥ {c.min_value:g}"
            else:
                allowed = ""
            if c.not_after_as_of:
                allowed = (allowed + "; " if allowed else "") + "not after as-of"
            lines.append(
                f"| `{c.name}` | {c.dtype} | {'yes' if c.nullable else 'no'} | {allowed} | {c.meaning} | "
                f"{'**yes**' if c.personal else 'no'} |"
            )
        lines.append("")
    lines += ["## Rejection rules", "", "| rule | meaning |", "|---|---|"]
    lines += [f"| `{r}` | {txt} |" for r, txt in RULE_TEXT.items()]
    lines.append("")
    return "\n".join(lines)
