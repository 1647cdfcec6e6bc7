"""The score file a CRM loads: its columns, declared once, rendered as docs and as a JSON Schema.

A column is never renamed or removed without bumping ``SCHEMA_VERSION`` (major); adding a column bumps the
minor version. ``tests/unit/pipelines/test_export.py`` pins the current columns, so a change cannot slip through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from features.intake.capabilities import Capabilities, for_source
from features.intake.contract import CHANNELS as CONTRACT_CHANNELS
from models.segments import (
    BEHAVIOUR_ZH,
    BEHAVIOURS,
    CLOSENESS,
    CLOSENESS_ZH,
    QUADRANT_ZH,
    QUADRANTS,
    TIERS,
    VALUE_TIER_ZH,
    VALUE_TIERS,
)

SCHEMA_VERSION = "1.2"  # 1.1: the planned channel's effect, the plan reason and touches planned
# 1.2: reasons only for the customers export.reasons names (the manifest's "reasons"); the columns are 1.1's
N_REASONS = 3


@dataclass(frozen=True)
class Column:
    name: str
    type: str            # string | number | integer | boolean | date
    nullable: bool
    en: str
    zh: str
    enum: tuple[str, ...] | None = None
    needs: tuple[str, ...] = ()  # source capabilities the column needs (features/intake/capabilities.py)


ARCHIVE, HISTORY = ("archive",), ("archive", "contact_history")


def _seg(name: str, codes: tuple[str, ...], zh_names: dict[str, str], en: str, zh: str) -> list[Column]:
    return [Column(name, "string", False, f"{en} (English code)", f"{zh}(英文代码)", codes, HISTORY),
            Column(f"{name}_zh", "string", False, f"{en} (Chinese name)", f"{zh}(中文)",
                   tuple(zh_names[c] for c in codes), HISTORY)]


CHANNELS = tuple(CONTRACT_CHANNELS)  # the contract's channels, in its order

COLUMNS: list[Column] = [
    Column("customer_id", "string", False, "Customer key (as in the customer archive)", "客户编号"),
    Column("as_of", "date", False, "Scoring date: history up to the day before", "评分日期(使用前一日及之前的数据)"),
    Column("split_role", "string", False,
           "A tabular source's row: how it was used (train, valid: early stopping, calib: calibration, test: "
           "evaluation, its score out of sample; score: a row of the score file)",
           "该行在训练中的用途(train训练, valid早停, calib校准, test评估, score待评分)",
           ("train", "valid", "calib", "test", "score"), ("own_split",)),
    Column("p_purchase", "number", False, "Probability of a new policy within the horizon (calibrated)",
           "观察期内新投保概率(已校准)", needs=("model:purchase",)),
    Column("p_lapse", "number", False, "Probability an in-force policy lapses within the horizon (0 if none held); "
           "a tabular source with a lapse/churn target: the probability of that outcome (calibrated)",
           "观察期内有效保单失效概率(无有效保单为0);流失/退保目标的表格数据源:该结果的概率(已校准)",
           needs=("model:lapse",)),
    Column("expected_premium", "number", False, "Expected annual premium if the customer buys, CNY",
           "若投保的预期年保费(元)", needs=ARCHIVE),
    Column("contact_value", "number", False,
           "Incremental value of the planned touch net of its cost, CNY (unplanned: the best permitted channel's; "
           "docs/segments.md)", "计划接触带来的增量收益减去成本(元)", needs=ARCHIVE),
    Column("priority_tier", "string", False, "Priority tier, P1 highest", "优先级(P1最高)", TIERS),
    *_seg("rule_quadrant", QUADRANTS, QUADRANT_ZH, "Rule ability x willingness quadrant", "规则客户分层"),
    *_seg("ml_quadrant", QUADRANTS, QUADRANT_ZH, "Model ability x willingness quadrant", "模型客户分层"),
    *_seg("value_tier", VALUE_TIERS, VALUE_TIER_ZH, "Value tier", "客户价值"),
    *_seg("closeness", CLOSENESS, CLOSENESS_ZH, "Closeness", "关系紧密程度"),
    *_seg("behaviour", BEHAVIOURS, BEHAVIOUR_ZH, "Behaviour", "行为特征"),
    Column("recommended_channel", "string", True,
           "Channel for the next touch (empty when suppressed or when no touch pays within the planned weeks)",
           "建议接触渠道(抑制或计划期内无值得的接触时为空)", CHANNELS, HISTORY),
    Column("next_contact_date", "date", True, "Date of the next touch (empty when there is none)",
           "下次接触日期(无计划接触时为空)", needs=HISTORY),
    Column("suppressed", "boolean", False, "Must not be contacted now", "当前不得接触", needs=HISTORY),
    Column("suppress_reason", "string", True,
           "Why: opt_out, complaint_within_<N>d, no_permitted_channel (empty when not suppressed)",
           "抑制原因(未抑制时为空)", needs=HISTORY),
    Column("channel_uplift_purchase", "number", True,
           "Incremental purchase probability of the planned touch (0.031 = +3.1 points; empty when none)",
           "计划接触带来的新投保概率增量(0.031即+3.1个百分点)", needs=HISTORY),
    Column("channel_uplift_lapse", "number", True,
           "Change in lapse probability the planned touch causes (negative: prevents lapses; empty when none)",
           "计划接触带来的失效概率变化(负值表示挽留)", needs=HISTORY),
    Column("plan_reason", "string", True,
           "Why this touch, in words (e.g. 'visit: +3.1 pt purchase, +620 CNY expected, cost 150'), or why none",
           "接触理由(或无接触的原因)", needs=HISTORY),
    Column("touches_planned", "integer", False, "Touches planned for the customer over the planned weeks",
           "计划期内安排的接触次数", needs=HISTORY),
    *(Column(f"reason_for_{i}", "string", True, f"Reason {i} for contacting (top feature contribution; empty "
             "outside the customers the manifest's reasons names)", f"推荐理由{i}(仅限清单reasons所列客户)")
      for i in range(1, N_REASONS + 1)),
    *(Column(f"reason_against_{i}", "string", True, f"Reason {i} against (most negative contribution; empty "
             "outside the customers the manifest's reasons names)", f"不利因素{i}(仅限清单reasons所列客户)")
      for i in range(1, N_REASONS + 1)),
    Column("model_version_purchase", "string", False, "Registered version of the propensity model",
           "投保倾向模型版本", needs=("model:purchase",)),
    Column("model_version_lapse", "string", False, "Registered version of the churn model", "流失模型版本",
           needs=("model:lapse",)),
    Column("model_version_value", "string", False, "Registered version of the value model", "价值模型版本",
           needs=ARCHIVE),
    Column("mlflow_run_id", "string", False, "MLflow run that trained and registered the models",
           "训练该模型的MLflow运行编号"),
]


# A tabular source with a randomised experiment adds the best arm per customer to the propensity profile.
EXPERIMENT_COLUMNS: list[Column] = [
    Column("recommended_arm", "string", True,
           "The experiment's arm with the largest incremental value net of its cost (empty: no arm pays)",
           "净增量价值最大的实验方案(为空表示没有值得的方案)", needs=("experiment",)),
    Column("arm_uplift", "number", True, "Incremental probability of the outcome under the recommended arm",
           "推荐方案带来的目标概率增量", needs=("experiment",)),
    Column("arm_value", "number", True, "Incremental value of the recommended arm net of its cost, CNY",
           "推荐方案的净增量价值(元)", needs=("experiment",)),
]


NAMES = [c.name for c in COLUMNS if "own_split" not in c.needs]  # the "book" profile: every other column


def profile(caps: Capabilities) -> tuple[str, list[Column]]:
    """The columns a source can fill: a book's (every column but ``split_role``); for a source without a policy
    archive or contact history (a tabular file) the columns whose ``needs`` it meets: the "propensity" profile
    (a purchase target), the "retention" profile (a lapse/churn target), or "propensity_retention" (a file
    with both flags: both probabilities; tiers rank by the primary target); with a randomised experiment, the
    "experiment" profile (propensity plus the best arm)."""
    cols = [c for c in COLUMNS if all(caps.has(n) for n in c.needs)]
    if caps.experiment:
        return "experiment", cols + EXPERIMENT_COLUMNS
    if [c.name for c in cols] == NAMES:
        return "book", cols
    if caps.other_target:
        return "propensity_retention", cols
    return ("retention" if caps.target == "lapse" else "propensity"), cols


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one row of the score file."""
    props: dict[str, Any] = {}
    for c in COLUMNS:
        t: dict[str, Any] = {"date": {"type": "string", "format": "date"}}.get(c.type, {"type": c.type})
        if c.enum:
            t["enum"] = list(c.enum)
        if c.nullable:
            t = {"anyOf": [t, {"type": "null"}]}
        props[c.name] = t | {"description": f"{c.en} / {c.zh}"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://contact-priority/score_file/{SCHEMA_VERSION}",
            "title": f"Contact-priority score file row, schema version {SCHEMA_VERSION}",
            "type": "object", "properties": props, "required": NAMES, "additionalProperties": False}


def render_json_schema() -> str:
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"


def _column_table() -> list[str]:
    """The columns table: each column's type, meaning and which profiles carry it."""
    lines = ["| # | column | type | null | description | 说明 | allowed values | book | propensity | retention |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    kinds = (for_source("tables", synthetic=False), for_source("tabular", synthetic=False),
             for_source("tabular", synthetic=False, target="lapse"))
    for i, c in enumerate(COLUMNS, 1):
        enum = ", ".join(f"`{v}`" for v in c.enum) if c.enum else ""
        kept = " | ".join("yes" if all(k.has(n) for n in c.needs) else "no" for k in kinds)
        lines.append(f"| {i} | `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.en} | {c.zh} | {enum} "
                     f"| {kept} |")
    return lines


def render_markdown() -> str:
    """docs/score_file.md: the files and how to load them, the columns, the profiles and reasons, the database."""
    return "\n".join([*_files_and_columns(), *_profiles_and_reasons(), *_database_loading()])


def _files_and_columns() -> list[str]:
    return [
        "# Score file (schema version " + SCHEMA_VERSION + ")",
        "",
        "<!-- generated by `python -m pipelines.docs` from pipelines/score_file.py; do not edit by hand -->",
        "",
        "The `export` stage delivers, for each as-of date, in `data/scores/`:",
        "",
        "| file | what |",
        "|---|---|",
        "| `scores_<as_of>.csv` | UTF-8 with BOM (Excel and Chinese CRMs open it as is), delimiter "
        "`export.delimiter` (default `,`), header row, ISO dates, empty cell = null, booleans `true`/`false` |",
        "| `scores_<as_of>.parquet` | the same rows, typed |",
        "| `manifest_<as_of>.json` | schema version, row count, SHA-256 of each file, as_of, model versions, "
        "tier cut-points, which customers carry reasons, creation time |",
        "",
        "Machine-readable schema of one row: [`score_file.schema.json`](score_file.schema.json) (JSON Schema "
        "2020-12).",
        "",
        "## Loading safely",
        "",
        "1. Read `manifest_<as_of>.json` first. **No manifest means not ready**: the export removes the old "
        "manifest before it replaces the files and writes the new one last, so a manifest always describes "
        "complete files.",
        "2. Check `schema_version`: the major number changes only when a column is renamed or removed.",
        "3. Verify each file's SHA-256 against the manifest, and the row count.",
        "4. Key: (`customer_id`, `as_of`). One row per customer in scope; re-running for the same as_of "
        "replaces the files with the same rows.",
        "",
        "Or let the pipeline load it: `python -m pipelines.export --to <database URL>` (see below).",
        "",
        "## Columns",
        "",
        *_column_table(),
    ]


def _profiles_and_reasons() -> list[str]:
    return [
        "",
        "**Profiles.** A book (the contract's tables) fills every column but `split_role`: the manifest says "
        "`\"profile\": \"book\"`. A source without a policy archive or contact history "
        "(`validate.source.kind: tabular`, e.g. the public benchmarks in [benchmarks.md](benchmarks.md)) has "
        "the model(s) of its own target(s): a purchase target gives the `propensity` profile (tiers ranked by "
        "`p_purchase`), a lapse/churn target (`target_kind: lapse`) the `retention` profile (`p_lapse`; tiers "
        "ranked by it, or by premium at risk when the source declares `premium_column`), and a file with both flags "
        "(`other_target`) the `propensity_retention` profile (both; tiers and reasons follow the primary target). "
        "Their files leave "
        "the columns marked *no* out (not emptied), score every row of the file (`split_role` says how each "
        "was used), and the manifest's `columns` lists exactly what is there; its `target` says what the "
        "probability is of, in English and Chinese. Database loading (`--to`) takes the book profile only.",
        "",
        "A tabular source with a randomised experiment (`tabular.experiment`, [your_data.md](your_data.md)) "
        "carries the `experiment` profile: the propensity profile plus",
        "",
        "| column | type | null | description | 说明 |",
        "|---|---|---|---|---|",
        *(f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.en} | {c.zh} |" for c in EXPERIMENT_COLUMNS),
        "",
        "Reasons read like `Quotes in the last 90 days: 3 / 近90天报价次数: 3`: a feature's description and this "
        "customer's value, in English and Chinese, from the propensity model's per-customer feature "
        "contributions (the largest positive ones *for*, the most negative *against*). An empty reason means "
        "fewer features moved the score in that direction.",
        "",
        "**Which customers carry reasons** (schema 1.2; `export.reasons` in `params.yaml`). By default "
        "(`customers: acted`) the customers someone acts on: the tiers in `export.reasons.tiers` (P1 and P2) and "
        "every customer whose next planned touch is agent-led (the channels of `segment.capacity.per_agent_per_week`"
        ": phone, visit, event). Batch SMS, WeChat and email need no reading, and the reasons' TreeSHAP is most "
        "of an export's time, growing with the rows explained (at 1M customers, 9 of its 10 minutes for every "
        "row; [benchmarks.md](benchmarks.md)). The others' reason columns are empty; "
        "`python -m pipelines.explain <customer_id>` gives any customer's on demand, and `customers: all` "
        "explains every row. The manifest's `reasons` says which: `{\"customers\": \"acted\", \"tiers\": "
        "[\"P1\", \"P2\"], \"planned_channels\": [...], \"rows\": <explained>}`. A customer's reasons are the "
        "same either way.",
        "",
        "No personal field (name, phone, ID number) is ever in a score file: they are dropped at validation.",
    ]


def _database_loading() -> list[str]:
    return [
        "",
        "## Loading into a database",
        "",
        "```bash",
        "python -m pipelines.export --to sqlite:///crm.db",
        "python -m pipelines.export --to postgresql+psycopg://user@host:5432/crm --table crm_scores_staging "
        "--schema staging",
        "```",
        "",
        "It verifies the files against the manifest, creates the table when missing (primary key "
        "`customer_id, as_of`), and in one transaction replaces the rows of that as_of with the file's rows "
        "(an upsert by key that also removes customers no longer in the file), then checks the row count and a "
        "checksum of every loaded value before committing. Running it again is a no-op in effect. It streams: "
        "PostgreSQL through `COPY` both ways (CSV that Arrow writes and parses), other databases through batched "
        "inserts and a cursor for the read-back, and the checksum (a sum of each row's SHA-256) needs no sorting, so "
        "memory stays flat with the book's size. Table and schema default to `export.db` in `params.yaml`.",
        "",
    ]
