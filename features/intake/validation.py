"""Row-level enforcement of the data contract.

Pure: DataFrames in, accepted rows + quarantine + counts out. The pipeline stage owns reading,
thresholds and writing. Each rejected row carries the first rule it broke (``reject_rule``), the
column concerned (``reject_column``) and every failure found (``reject_detail``), so a data owner
can fix the source without re-running anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from features.intake import personal
from features.intake.contract import AGE_MAX, AGE_MIN, TABLE_ORDER, TABLES, ColumnSpec, ContractError, TableSpec
from features.intake.keys import Ids, positions, prepared
from features.intake.references import BIRTHS, keys_and_references
from features.intake.text_checks import arrow_pattern, has_control

# Rules in the order in which they explain a rejection (the first one found is the reason shown).
RULE_PRIORITY = (
    "control_character", "placeholder_key", "mixed_timezone",
    "missing", "type", "pattern", "allowed_values", "range", "future_date",
    "birth_before_first_policy", "status_dates_consistent", "dates_after_issue", "holdout_has_no_outcome",
    "duplicate_key", "duplicate_event", "orphan_reference", "issued_before_birth",
)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
# pandera check names -> contract rule names
_PANDERA_RULES = {
    "not_nullable": "missing",
    "isin": "allowed_values",
    "in_range": "range",
    "greater_than_or_equal_to": "range",
    "less_than_or_equal_to": "range",
    "str_matches": "pattern",
}


@dataclass
class TableResult:
    """Outcome of validating one table."""

    table: str
    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    n_input: int
    # (rule, column) -> number of rows quarantined with that primary reason
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)
    key_column: str | None = None  # what identifies a quarantined row (default: the contract table's key)

    @property
    def n_rejected(self) -> int:
        return len(self.quarantine)

    @property
    def n_accepted(self) -> int:
        return len(self.accepted)

    def sample_keys(self, rule: str, column: str, n: int = 5) -> list[str]:
        key = self.key_column or TABLES[self.table].key
        q = self.quarantine
        hit = q[(q["reject_rule"] == rule) & (q["reject_column"] == column)]
        return [str(k) for k in hit[key].head(n).tolist()]


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
def _blank_to_na(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        s = s.astype("string")
        empty = (s.str.strip() == "").fillna(False)
        if empty.any():  # most columns have none: no masked copy (10 s of validate at 5M customers)
            s = s.mask(empty)
    return s


PLACEHOLDERS = {"null", "nan", "none", "-", "n/a", "na", "nil", "undefined", "#n/a"}
_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"


def _text_failures(raw: pd.DataFrame, spec: TableSpec) -> list[tuple[str, str, pd.Series]]:
    """Text that is no value: a key spelled as a placeholder (NULL, nan, -) and control characters (a NUL
    byte from a broken export) are quarantined, never accepted as data."""
    keys = {spec.key, *(fk.column for fk in spec.foreign_keys)}
    out = []
    for col in spec.columns:
        s = raw[col.name]
        if col.dtype != "string" or not (s.dtype == object or pd.api.types.is_string_dtype(s)):
            continue
        text = s.astype("string")
        control = pd.Series(has_control(text), index=text.index)
        if control.any():
            out.append(("control_character", col.name, control.astype(bool)))
        if col.name in keys:
            ph = text.str.strip().str.lower().isin(PLACEHOLDERS).fillna(False) & ~control
            if ph.any():
                out.append(("placeholder_key", col.name, ph.astype(bool)))
    return out


def _parse_times(s: pd.Series, common: str | None = None) -> tuple[pd.Series, pd.Series, str]:
    """ISO dates/timestamps. One column must keep one UTC offset (or none): rows whose offset differs from the
    column's most common one (or ``common``, fixed by an earlier chunk of the table) are flagged
    (``mixed_timezone``) instead of being shifted by a guess. Returns (parsed, zone mask, the offset kept)."""
    text = s.astype("string")
    offset = text.str.strip().str.extract(_OFFSET, expand=False).str.replace(":", "", regex=False).fillna("")
    present = text.notna()
    if common is None:
        mode = offset[present].mode()
        common = str(mode.iloc[0]) if len(mode) else ""
    zone = present & (offset != common)
    out = pd.to_datetime(text.where(~zone), errors="coerce", format="ISO8601")
    return out, zone, common


def _parse_column(raw: pd.Series, col: ColumnSpec, zones: dict[str, str] | None = None,
                  ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse one column into its contract type. Returns (parsed, type_failed mask, mixed_timezone mask).

    ``zones`` holds each timestamp column's UTC offset: read from it when present, recorded in it when not."""
    s = _blank_to_na(raw)
    present = s.notna()
    zone = pd.Series(False, index=s.index)
    if col.dtype == "string":
        out = s.astype("string")
    elif col.dtype in ("int", "float"):
        out = pd.to_numeric(s, errors="coerce")
        if col.dtype == "int":
            whole = out.isna() | (np.floor(out) == out)
            out = out.where(whole)
            out = out.astype("Int64")
        else:
            out = out.astype("float64")
    elif col.dtype in ("date", "timestamp"):
        if pd.api.types.is_datetime64_any_dtype(s):
            out = s
        else:
            out, zone, common = _parse_times(s, None if zones is None else zones.get(col.name))
            if zones is not None:
                zones.setdefault(col.name, common)
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        out = out.astype("datetime64[us]")
        if col.dtype == "date":
            out = out.dt.normalize()
    elif col.dtype == "bool":
        if pd.api.types.is_bool_dtype(s):
            out = s.astype("boolean")
        else:
            txt = s.astype("string").str.strip().str.lower()
            out = pd.Series(pd.NA, index=s.index, dtype="boolean")
            out[txt.isin(_TRUE)] = True
            out[txt.isin(_FALSE)] = False
    else:  # pragma: no cover - the Literal type forbids it
        raise AssertionError(col.dtype)
    type_failed = present & out.isna() & ~zone
    return out, type_failed, zone


def _pandera_schema(spec: TableSpec) -> pa.DataFrameSchema:
    """The contract's column-level checks as a pandera schema (on parsed columns)."""
    dtypes = {"string": "string", "int": "Int64", "float": "float64", "date": "datetime64[us]",
              "timestamp": "datetime64[us]", "bool": "boolean"}
    cols: dict[str, pa.Column] = {}
    for c in spec.columns:
        checks: list[pa.Check] = []
        if c.allowed is not None:
            checks.append(pa.Check.isin(list(c.allowed)))
        if c.min_value is not None and c.max_value is not None:
            checks.append(pa.Check.in_range(c.min_value, c.max_value))
        if c.regex is not None:
            checks.append(pa.Check.str_matches(arrow_pattern(c.regex)))  # the same set, matched in Arrow
        cols[c.name] = pa.Column(dtypes[c.dtype], checks=checks, nullable=c.nullable, coerce=False)
    return pa.DataFrameSchema(cols, strict=False, name=spec.name)


# ---------------------------------------------------------------------------------------------
# Row rules that span columns
# ---------------------------------------------------------------------------------------------
def _row_rules(df: pd.DataFrame, spec: TableSpec, as_of: pd.Timestamp) -> list[tuple[str, str, pd.Series]]:
    out: list[tuple[str, str, pd.Series]] = []
    for rule in spec.row_rules:
        if rule == "birth_before_first_policy":
            age = (as_of - df["birth_date"]).dt.days / 365.25
            bad = (age < AGE_MIN) | (age > AGE_MAX + 1)
            bad |= df["first_policy_date"].notna() & (df["first_policy_date"] < df["birth_date"])
            out.append((rule, "birth_date", bad.fillna(False)))
        elif rule == "status_dates_consistent":
            st = df["status"]
            lapse, surr, mat = df["lapse_date"].notna(), df["surrender_date"].notna(), df["maturity_date"]
            matured_ok = mat.notna() & (mat <= as_of)
            bad = (
                ((st == "lapsed") & (~lapse | surr))
                | ((st == "surrendered") & (~surr | lapse))
                | ((st == "matured") & (~matured_ok | lapse | surr))
                | ((st == "in_force") & (lapse | surr | (mat.notna() & (mat < as_of))))
            )
            out.append((rule, "status", bad.fillna(False).astype(bool)))
        elif rule == "dates_after_issue":
            iss = df["issue_date"]
            bad = pd.Series(False, index=df.index)
            for c in ("lapse_date", "surrender_date", "maturity_date"):
                bad |= (df[c].notna() & (df[c] < iss)).fillna(False)
            out.append((rule, "issue_date", bad))
        elif rule == "holdout_has_no_outcome":
            bad = df["holdout"].fillna(False).astype(bool) == df["outcome"].notna()
            out.append((rule, "outcome", bad))
        else:  # pragma: no cover - contract and code are written together
            raise AssertionError(f"unknown row rule {rule}")
    return out


# ---------------------------------------------------------------------------------------------
# The table validator
# ---------------------------------------------------------------------------------------------
def check_columns(raw: pd.DataFrame, spec: TableSpec, source: str) -> None:
    """Table-level check: every contract column is present. Extra columns are allowed (ignored)."""
    missing = [c for c in spec.column_names if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:12])) + (" …" if raw.shape[1] > 12 else "")
        raise ContractError(
            f"{source} (table '{spec.name}') lacks required column(s) {missing} (rule: missing_columns); found "
            f"{raw.shape[1]} column(s): {found}. See docs/data_contract.md."
        )
    check_not_personal(raw, spec, source)


def check_not_personal(raw: pd.DataFrame, spec: TableSpec, source: str) -> None:
    """A free-form contract column (a key, an agent, a city) that holds personal data stops the table.

    Keys travel into features, MLflow and the score file: a customer_id that is a phone or ID number would
    publish it. The contract's own personal columns (name, phone, id_number) are dropped, not checked.
    """
    for col in spec.columns:
        if col.dtype != "string" or col.personal or col.allowed is not None:
            continue
        hit = personal.by_content(raw[col.name])
        if hit:
            raise ContractError(
                f"{source} (table '{spec.name}'), column {col.name}: {hit[1]:.0%} of sampled values look like "
                f"{hit[0]} values (rule: personal_data). This column reaches features and score files, so it "
                "must not be personal data: map a pseudonymous key (a salted hash of it, say).")


@dataclass
class CheckedRows:
    """A table's rows after the row-local rules (parsing, contract checks, row rules): what the key and
    reference rules start from. ``reason`` is null for a row that passed them all."""

    raw: pd.DataFrame  # the contract's columns as they arrived, positional index
    df: pd.DataFrame  # the same rows parsed into the contract's types
    reason: pd.Series
    reason_col: pd.Series
    detail: dict[int, list[str]]

    def details(self, rows: pd.Series) -> pd.Series:
        """Every failure of the rows in the mask ``rows``, as the quarantine's ``reject_detail`` text."""
        text = pd.Series({i: ";".join(v) for i, v in self.detail.items()}, dtype="string")
        return text.reindex(self.df.index[rows])


def check_rows(raw: pd.DataFrame, spec: TableSpec, as_of: dt.date, source: str = "<frame>",
               zones: dict[str, str] | None = None) -> CheckedRows:
    """Every rule that looks at one row only. ``zones``: see ``_parse_column`` (a chunked table shares it)."""
    check_columns(raw, spec, source)
    raw = raw[spec.column_names].reset_index(drop=True)
    as_of_ts = pd.Timestamp(as_of)
    end_of_as_of = as_of_ts + pd.Timedelta(days=1)

    parsed: dict[str, pd.Series] = {}
    failures: list[tuple[str, str, pd.Series]] = _text_failures(raw, spec)  # (rule, column, mask)
    for col in spec.columns:
        parsed[col.name], type_failed, zone = _parse_column(raw[col.name], col, zones)
        if zone.any():
            failures.append(("mixed_timezone", col.name, zone))
        if type_failed.any():
            failures.append(("type", col.name, type_failed))
    df = pd.DataFrame(parsed)
    del parsed  # the frame holds its own copy: two parsed copies of a 17M-row history do not fit beside the raw one

    # Column-level contract checks through pandera (lazy: collect every failure case).
    schema = _pandera_schema(spec)
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as err:
        fc = err.failure_cases
        fc = fc[fc["index"].notna()]
        for (column, check), grp in fc.groupby(["column", "check"], dropna=False):
            name = str(check).split("(")[0]
            rule = _PANDERA_RULES.get(name)
            if rule is None:
                raise ContractError(f"{source}: unexpected contract failure {check} on column {column}") from err
            mask = pd.Series(False, index=df.index)
            mask.loc[grp["index"].astype(int).unique()] = True
            # a value that failed to parse shows up as null: report it as 'type', not 'missing'
            failures.append((rule, str(column), mask))

    for col in spec.columns:
        if col.not_after_as_of:
            v = df[col.name]
            failures.append(("future_date", col.name, (v.notna() & (v >= end_of_as_of)).fillna(False)))

    failures += _row_rules(df, spec, as_of_ts)
    reason, reason_col, detail = _first_reasons(failures, df.index)
    return CheckedRows(raw, df, reason, reason_col, detail)


def quarantine_frame(raw: pd.DataFrame, rule: pd.Series, column: pd.Series, detail: pd.Series,
                     source_row: np.ndarray, spec: TableSpec) -> pd.DataFrame:
    """Rejected rows as the quarantine file holds them: the raw text of every field (so the owner sees what
    arrived), the first rule broken, its column, every failure found, and the 1-based source row."""
    q = pd.DataFrame({c: raw[c].astype("string") for c in spec.column_names}, index=raw.index)
    q["reject_rule"] = rule.astype("string")
    q["reject_column"] = column.astype("string")
    q["reject_detail"] = detail.astype("string")
    q.insert(0, "source_row", np.asarray(source_row, dtype="int64"))
    return q.drop(columns=spec.personal_columns).reset_index(drop=True)


def count_rejects(q: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Quarantined rows per (first rule, column)."""
    return {(str(r), str(c)): int(n) for (r, c), n in q.groupby(["reject_rule", "reject_column"]).size().items()}


def validate_table(
    raw: pd.DataFrame,
    spec: TableSpec,
    as_of: dt.date,
    parents: dict[str, pd.Series] | None = None,
    source: str = "<frame>",
) -> TableResult:
    """Validate one raw table against the contract.

    ``parents`` maps a referenced table name to the keys accepted there; foreign keys into the
    table itself (a customer referred by a customer) are checked against this table's accepted keys.
    """
    c = check_rows(raw, spec, as_of, source)
    ok = keys_and_references(c.df, spec, dict(parents or {}), c.reason, c.reason_col, c.detail)
    bad = ~ok
    detail = c.details(bad)
    q = quarantine_frame(c.raw.loc[bad], c.reason[bad], c.reason_col[bad], detail,
                         c.df.index[bad].to_numpy() + 1, spec)
    accepted = _accepted(c.df.drop(columns=spec.personal_columns), ok, spec)
    return TableResult(spec.name, accepted, q, n_input=len(c.df), rejects=count_rejects(q))


def _accepted(df: pd.DataFrame, ok: pd.Series, spec: TableSpec) -> pd.DataFrame:
    """The accepted rows in the contract's order (``order_by``, stable), taken in one copy."""
    rows = np.flatnonzero(ok.to_numpy(bool))
    if spec.order_by and len(rows):
        cols = {c: df[c[:-6] if c.endswith(":month") else c].iloc[rows].reset_index(drop=True) for c in spec.order_by}
        keys = pd.DataFrame({c: (s.dt.to_period("M") if c.endswith(":month") else s) for c, s in cols.items()})
        rows = rows[keys.sort_values(list(keys.columns), kind="stable").index.to_numpy()]
    return df.take(rows).reset_index(drop=True)


def _type_mask(failures: list[tuple[str, str, pd.Series]], column: str) -> pd.Series:
    masks = [m for r, c, m in failures if r == "type" and c == column]
    if not masks:
        return pd.Series(False, index=failures[0][2].index)
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def _first_reasons(failures: list[tuple[str, str, pd.Series]], index: pd.Index,
                   ) -> tuple[pd.Series, pd.Series, dict[int, list[str]]]:
    """Each row's first reason in ``RULE_PRIORITY`` order (rule, column), and every rule it broke (detail)."""
    reason = pd.Series(pd.NA, index=index, dtype="string")
    reason_col = pd.Series(pd.NA, index=index, dtype="string")
    detail: dict[int, list[str]] = {}
    for rule in RULE_PRIORITY:
        for r, c, mask in failures:
            if r != rule or not mask.any():
                continue
            if r == "missing":
                # parse failures leave nulls behind; those rows are already 'type'
                mask = mask & ~_type_mask(failures, c)
            new = mask & reason.isna()
            reason[new] = r
            reason_col[new] = c
            for i in np.flatnonzero(mask.to_numpy()):
                detail.setdefault(int(i), []).append(f"{r}:{c}")

    return reason, reason_col, detail


def validate_book(
    raw: dict[str, pd.DataFrame],
    as_of: dt.date,
    sources: dict[str, str] | None = None,
) -> dict[str, TableResult]:
    """Validate all tables in dependency order so rejected parents cascade to their children."""
    sources = sources or {}
    results: dict[str, TableResult] = {}
    accepted_keys: dict[str, pd.Series] = {}
    for name in TABLE_ORDER:
        spec = TABLES[name]
        if name not in raw:
            if spec.required:
                raise ContractError(f"required table '{name}' is missing")
            continue
        res = validate_table(raw[name], spec, as_of, parents=accepted_keys, source=sources.get(name, name))
        results[name] = res
        accepted_keys[name] = res.accepted[spec.key]
        if name == "customers":
            accepted_keys[BIRTHS] = res.accepted.set_index("customer_id")["birth_date"]
    if "customers" in results:
        assign_customer_keys(results)
    return results


def assign_customer_keys(results: dict[str, TableResult]) -> None:
    """Add ``customer_key`` (and ``referred_by_key`` to customers): each accepted customer's dense rank by
    ``customer_id``. The feature SQL groups and joins on it: integer keys hash and compare several times
    faster than text ids, and 32-bit ones faster still (docs/benchmarks.md). Internal to one run; never
    exported."""
    index = prepared(customer_index(results["customers"].accepted))
    for res in results.values():
        add_customer_key(res.accepted, index)
    add_referral_key(results["customers"].accepted, index)


def add_referral_key(cust: pd.DataFrame, index: Ids) -> None:
    """Add ``referred_by_key`` to the accepted customers (in place): the referrer's ``customer_key``."""
    ref = positions(cust["referred_by"].astype("string"), index)
    cust["referred_by_key"] = pd.array(np.where(ref >= 0, ref, 0), dtype="Int32")
    cust.loc[ref < 0, "referred_by_key"] = pd.NA


def customer_index(customers: pd.DataFrame) -> pd.Index:
    """The accepted customer ids in order: a customer's position is its ``customer_key``."""
    return pd.Index(np.sort(customers["customer_id"].astype(str).to_numpy()))


def add_customer_key(df: pd.DataFrame, index: Ids) -> None:
    """Add ``customer_key`` to a table that has ``customer_id`` (in place). ``index``: ``customer_index``, made
    ready once (``keys.prepared``) when many tables or chunks are keyed against it."""
    if "customer_id" in df:
        df["customer_key"] = positions(df["customer_id"].astype("string"), index).astype("int32")
