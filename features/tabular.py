"""Tabular sources: one row per customer (or per contact) whose columns already are the features.

Public benchmark data (UCI Bank Marketing, CoIL Challenge 2000) and many "analytical base tables" a
bank exports come this way: no customer archive and contact history to build point-in-time features
from, but a file with one row per case, a target column, and, when the rows are in time order, a way to
tell which period each row belongs to. ``TabularSpec`` declares that shape; ``prepare`` validates it and
returns the same feature table the book path writes (``customer_id``, ``snapshot_date``, the features,
``purchase_h``, or ``lapse_h`` when the target is a lapse/churn flag) plus the ``role`` of each row in the
split, and a feature dictionary built from the columns. Validation follows the contract's rules: a target
value that is neither positive nor negative is quarantined with its rule, column and count, never guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features import personal
from features.capabilities import LABELS

OUTCOME_WORDS = {"purchase": ("purchase", "新投保"), "lapse": ("lapse or churn", "流失/退保")}
MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                      "nov", "dec"), start=1)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitShares(_Strict):
    """Shares of the labelled rows per role; train is the rest (the earliest rows when time-ordered)."""

    valid: float = Field(gt=0, lt=0.5)   # early stopping
    calib: float = Field(gt=0, lt=0.5)   # calibration, never seen by training
    test: float = Field(gt=0, lt=0.5)    # evaluation: the latest rows when time-ordered

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitShares:
        if self.valid + self.calib + self.test > 0.8:
            raise ValueError("valid + calib + test must leave at least 20% of the rows for training")
        return self


class ExperimentSpec(_Strict):
    """A randomised experiment in the file: which arm each row received, and what a success is worth."""

    treatment: str = Field(min_length=1)      # the column naming each row's arm
    control: str = Field(min_length=1)        # its value for the random control group (no touch)
    arms: list[str] = []                      # the arms' values (default: every other value in the file)
    value_per_success: float = Field(gt=0)    # CNY one more positive outcome is worth
    arm_cost: dict[str, float] = {}           # CNY per touch of an arm (default 0)
    modifiers: list[str] = []                 # numeric columns the effect may vary with (default: all numeric)


class ValueLabel(_Strict):
    """How a coded value reads in reasons, in English and Chinese."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class TabularSpec(_Strict):
    """A one-file source: where it is, which column is the target, what must never be a feature."""

    file: str = Field(min_length=1)          # relative to validate.source.dir
    score_file: str | None = None            # rows to score, same columns without the target (optional)
    header: bool = True                      # False: the file has no header row; give `names`
    names: list[str] = []                    # column names in file order (header: false)
    id_column: str | None = None             # the customer key; `none`: the 1-based row number in the file
    row_keys: bool = False                   # set by `id_column: none`: rows are keyed by number on purpose
    target: str = Field(min_length=1)
    # what a positive target means: purchase (bought; the propensity model) or lapse (lapsed, churned,
    # surrendered; the churn model, and tiers rank by retention value). `churn` is read as lapse.
    target_kind: Literal["purchase", "lapse"] = "purchase"
    target_en: str | None = None             # the outcome in words, for descriptions (default from the kind)
    target_zh: str | None = None
    premium_column: str | None = None        # lapse: the premium at risk per row (ranks tiers by p x premium)
    positive: list[str] = Field(min_length=1)  # target values meaning the outcome happened (compared as text)
    negative: list[str] = Field(min_length=1)
    drop: list[str] = []                     # never features: known only after the outcome (leaky)
    personal: list[str] = []                 # personal data (dropped); more is found by name and content
    not_personal: list[str] = []             # taken for personal data by name, but is not (content still checked)
    categorical: list[str] = []              # coded columns that look numeric but are not ordinal
    missing: dict[str, list[str]] = {}       # column -> codes meaning "unknown" (e.g. pdays 999 = never)
    time_order: Literal["file", "none"]      # file: rows are in time order (out-of-time split); none: random
    month_column: str | None = None          # time_order file: month of each row (jan..dec or 1..12), years
    start_year: int | None = Field(default=None, ge=1900, le=2100)  # roll over when the month goes back
    split: SplitShares
    seed: int = Field(default=20261123, ge=0)
    describe: dict[str, str] = {}            # column -> one-line description for the dictionary and reasons
    describe_zh: dict[str, str] = {}         # column -> the same in Chinese (else reasons use a generic phrase)
    labels: dict[str, dict[str, ValueLabel]] = {}  # column -> value -> its words in reasons ({en, zh})
    experiment: ExperimentSpec | None = None  # a randomised experiment: uplift per arm, best arm or none

    @model_validator(mode="before")
    @classmethod
    def _explicit_row_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("id_column", "")).strip().lower() == "none":
            data = {**data, "id_column": None, "row_keys": True}
        if isinstance(data, dict) and str(data.get("target_kind", "")).strip().lower() == "churn":
            data = {**data, "target_kind": "lapse"}
        return data

    @property
    def label_column(self) -> str:
        """The feature table's label column for this target kind."""
        return LABELS[self.target_kind]

    def outcome_words(self) -> tuple[str, str]:
        """The outcome in English and Chinese (the spec's words, else the kind's)."""
        en, zh = OUTCOME_WORDS[self.target_kind]
        return (self.target_en or f"{en} ('{self.target}' is one of {self.positive})", self.target_zh or zh)

    @field_validator("positive", "negative", "names", "drop", "categorical", "personal", "not_personal",
                     mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any) -> Any:
        """YAML reads unquoted Yes/No/On/Off/True/False as booleans; say so instead of "not a valid string"."""
        for x in v if isinstance(v, list) else []:
            if isinstance(x, bool):
                raise ValueError(f"got the YAML boolean {x}: YAML reads unquoted Yes/No/On/Off/True/False as "
                                 "booleans; quote it: 'Yes'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TabularSpec:
        if not self.header and not self.names:
            raise ValueError("header: false needs `names` (the column names in file order)")
        if self.month_column and self.start_year is None:
            raise ValueError("month_column needs start_year (the year of the file's first row)")
        if self.month_column and self.time_order != "file":
            raise ValueError("month_column only makes sense with time_order: file")
        both = set(self.positive) & set(self.negative)
        if both:
            raise ValueError(f"target values {sorted(both)} are listed as both positive and negative")
        if self.target in self.drop:
            raise ValueError(f"the target '{self.target}' cannot also be dropped")
        if self.experiment and self.experiment.treatment in (self.target, *self.drop):
            raise ValueError(f"the treatment column '{self.experiment.treatment}' cannot be the target or dropped")
        if self.experiment and self.experiment.control in self.experiment.arms:
            raise ValueError(f"the control value '{self.experiment.control}' is also listed among the arms")
        if self.experiment and self.target_kind != "purchase":
            raise ValueError("an experiment's outcome is a success to buy more of: target_kind must be purchase")
        if self.premium_column and self.target_kind != "lapse":
            raise ValueError("premium_column (the premium at risk) only applies to target_kind: lapse")
        if self.premium_column and self.premium_column in (self.target, *self.drop):
            raise ValueError(f"premium_column '{self.premium_column}' cannot be the target or dropped")
        return self


class TabularError(ValueError):
    """The source does not fit its spec (names the file, the key and the columns)."""


@dataclass
class Prepared:
    """A validated tabular source, in the feature table's shape."""

    features: pd.DataFrame                   # customer_id, snapshot_date, role, features..., purchase_h
    dictionary: list[dict[str, Any]]
    quarantine: pd.DataFrame                 # rejected rows: their 1-based row, reject_rule and reject_column
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)
    n_input: int = 0
    personal: list[personal.Finding] = field(default_factory=list)  # columns dropped as personal data


def key_of(row_number: int) -> str:
    """Key of a labelled row without an id column: its 1-based row number in the file."""
    return f"r{row_number:07d}"


def score_key(row_number: int) -> str:
    """Key of a row of the score file without an id column: its 1-based row number in that file."""
    return f"s{row_number:07d}"


def row_of_score_key(key: str) -> int:
    if not (isinstance(key, str) and key.startswith("s") and key[1:].isdigit()):
        raise TabularError(f"'{key}' is not a score-file row key (s + row number): the source has an id column")
    return int(key[1:])


def _months_to_dates(months: pd.Series, start_year: int, source: str, column: str) -> pd.Series:
    """Month of each row (file order) to the first day of its month, the year rolling over when the month
    goes back (Bank Marketing has no year: it runs May 2008 - Nov 2010 in order)."""
    text = months.astype(str).str.strip().str.lower().str[:3]
    num = text.map(MONTHS).astype("Float64")
    num = num.fillna(pd.to_numeric(text, errors="coerce").astype("Float64"))
    bad = num.isna() | (num < 1) | (num > 12)
    if bad.any():
        raise TabularError(f"{source}: column '{column}' has {int(bad.sum()):,} value(s) that are not a month "
                           f"(jan..dec or 1..12), e.g. {months[bad].astype(str).unique()[:3].tolist()}")
    m = num.astype(int).to_numpy()
    year = start_year + np.concatenate([[0], np.cumsum(np.diff(m) < 0)])
    return pd.Series([dt.date(int(y), int(mm), 1) for y, mm in zip(year, m, strict=True)], index=months.index)


def _roles_in_order(n: int, s: SplitShares) -> np.ndarray:
    """Earliest rows train, then valid, calib and test: the latest ``test`` share is never seen before."""
    edges = np.round(np.cumsum([1 - s.valid - s.calib - s.test, s.valid, s.calib]) * n).astype(int)
    roles = np.full(n, "test", dtype=object)
    roles[:edges[0]] = "train"
    roles[edges[0]:edges[1]] = "valid"
    roles[edges[1]:edges[2]] = "calib"
    return roles


def _roles_hashed(keys: pd.Series, s: SplitShares, seed: int) -> np.ndarray:
    """A stable random split by hashed key: the same row lands in the same role on every run."""
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}#{k}".encode(), digest_size=8).digest(), "big")
                  for k in keys], dtype=np.float64) / 2.0**64
    cuts = np.cumsum([s.valid, s.calib, s.test])
    return np.select([u < cuts[0], u < cuts[1], u < cuts[2]], ["valid", "calib", "test"], "train").astype(object)


def _check_columns(df: pd.DataFrame, spec: TabularSpec, source: str, with_target: bool) -> None:
    named = {spec.target} if with_target else set()
    named |= set(spec.drop) | set(spec.categorical) | set(spec.missing) | set(spec.describe) | set(spec.not_personal)
    named |= set(spec.describe_zh) | set(spec.labels)
    named |= {c for c in (spec.id_column, spec.month_column, spec.premium_column) if c}
    if spec.experiment and with_target:
        named |= {spec.experiment.treatment, *spec.experiment.modifiers}
    # personal columns a spec drops may be absent (a later export without them is fine)
    absent = sorted(c for c in named - set(df.columns) if not (c in spec.drop and personal.by_name(c)))
    if not with_target:
        absent = [c for c in absent if c != spec.target]
    if absent:
        raise TabularError(f"{source}: validate.source.tabular names columns that are not in the file: {absent}. "
                           f"The file has: {', '.join(map(str, df.columns[:40]))}")


def feature_columns(df: pd.DataFrame, spec: TabularSpec, hidden: list[str] | None = None) -> list[str]:
    """The columns that become features: all but the target, key, dropped and personal (``hidden``) ones."""
    skip = {spec.target, spec.id_column, *spec.drop, *(hidden or [])}
    if spec.experiment:  # the arm a row received is the treatment, never a feature
        skip.add(spec.experiment.treatment)
    return [c for c in df.columns if c not in skip]


def _typed(df: pd.DataFrame, cols: list[str], spec: TabularSpec) -> tuple[pd.DataFrame, dict[str, str]]:
    """Numbers where every present value parses as one (and the column is not declared categorical);
    text categories otherwise. Declared missing codes become nulls first."""
    out = pd.DataFrame(index=df.index)
    dtypes: dict[str, str] = {}
    for c in cols:
        s = df[c].astype("string").str.strip()
        s = s.mask(s.isin(spec.missing.get(c, [])) | (s == ""))
        num = pd.to_numeric(s, errors="coerce")
        if c not in spec.categorical and num.notna().sum() == s.notna().sum():
            out[c], dtypes[c] = num.astype("float64"), "float"
        else:
            out[c], dtypes[c] = s.astype(object).where(s.notna(), None), "category"
    return out, dtypes


def prepare(raw: pd.DataFrame, spec: TabularSpec, as_of: dt.date, source: str,
            score_raw: pd.DataFrame | None = None) -> Prepared:
    """Validate a tabular source and shape it as the feature table (see the module docstring)."""
    _check_columns(raw, spec, source, with_target=True)
    n = len(raw)
    if n == 0:
        raise TabularError(f"{source}: the file has no rows")
    found = personal_columns(raw, spec, source)
    _guard_ids(raw, spec, source, {f.column for f in found})
    keys = (raw[spec.id_column].astype(str).str.strip() if spec.id_column
            else pd.Series([key_of(i) for i in range(1, n + 1)], index=raw.index))
    target = raw[spec.target].astype("string").str.strip()
    is_pos, is_neg = target.isin(spec.positive), target.isin(spec.negative)
    rejects: dict[tuple[str, str], int] = {}
    bad = ~(is_pos | is_neg)
    dup = keys.duplicated(keep="first") & ~bad
    reasons = pd.Series(None, index=raw.index, dtype=object)
    reasons[bad] = f"allowed_values:{spec.target}"
    reasons[dup] = f"unique:{spec.id_column or 'row'}"
    arm = experiment_arms(raw, spec)
    if arm is not None:
        reasons[arm.isna() & reasons.isna()] = f"allowed_values:{spec.experiment.treatment}"  # type: ignore[union-attr]
    for r, c in reasons.dropna().value_counts().items():
        rule, col = str(r).split(":", 1)
        rejects[(rule, col)] = int(c)
    keep = reasons.isna()
    # personal and dropped columns never leave validation, not even in the quarantine
    hidden = [c for c in raw.columns if c in spec.drop or c in {f.column for f in found}]
    quarantine = raw.loc[~keep].drop(columns=hidden).astype(str).assign(
        row=np.flatnonzero(~keep.to_numpy()) + 1,
        reject_rule=reasons[~keep].str.split(":").str[0], reject_column=reasons[~keep].str.split(":", n=1).str[1])
    if spec.month_column:
        dates = _months_to_dates(raw[spec.month_column], spec.start_year or 0, source, spec.month_column)
    else:
        dates = pd.Series(as_of - dt.timedelta(days=1), index=raw.index)
    cols = feature_columns(raw, spec, [f.column for f in found])
    typed, dtypes = _typed(raw, cols, spec)
    if spec.premium_column and dtypes.get(spec.premium_column) != "float":
        raise TabularError(f"{source}: premium_column '{spec.premium_column}' must be numeric (the premium at risk "
                           "per row), but some of its values are not numbers")
    labelled = pd.DataFrame({"customer_id": keys, "snapshot_date": dates}).join(typed)
    labelled[spec.label_column] = is_pos.astype("float64")
    if arm is not None:
        labelled["treatment"] = arm.to_numpy()
    labelled = labelled[keep.to_numpy()].reset_index(drop=True)
    labelled.insert(2, "role", _roles_in_order(len(labelled), spec.split) if spec.time_order == "file"
                    else _roles_hashed(labelled["customer_id"], spec.split, spec.seed))
    frames = [labelled]
    if score_raw is not None:
        _check_columns(score_raw, spec, f"{source} (score file)", with_target=False)
        missing_cols = sorted(set(cols) - set(score_raw.columns))
        if missing_cols:
            raise TabularError(f"score file of {source}: lacks the feature columns {missing_cols}")
        skeys = (score_raw[spec.id_column].astype(str).str.strip() if spec.id_column
                 else pd.Series([score_key(i) for i in range(1, len(score_raw) + 1)], index=score_raw.index))
        st, _ = _typed(score_raw, cols, spec)
        for c, t in dtypes.items():  # the training file decides a column's type
            if t == "float":
                st[c] = pd.to_numeric(st[c], errors="coerce").astype("float64")
        scored = pd.DataFrame({"customer_id": skeys, "snapshot_date": as_of, "role": "score"}).join(st)
        scored[spec.label_column] = np.nan
        if arm is not None:
            scored["treatment"] = None
        frames.append(scored.reset_index(drop=True))
    features = pd.concat(frames, ignore_index=True)
    features["snapshot_date"] = pd.to_datetime(features["snapshot_date"]).dt.date
    return Prepared(features=features, dictionary=dictionary(cols, dtypes, spec), quarantine=quarantine,
                    rejects=rejects, n_input=n, personal=found)


ID_MIN_ROWS = 50  # below this many rows, a column of distinct values proves nothing


def _guard_ids(raw: pd.DataFrame, spec: TabularSpec, source: str, hidden: set[str]) -> None:
    """Without an id_column, a non-numeric column with a different value in every row is an ID: as a feature it
    memorises rows, and the score file could not be joined back. Stop and say how to declare it."""
    if spec.id_column or spec.row_keys or len(raw) < ID_MIN_ROWS:
        return
    skip = {spec.target, *spec.drop, *hidden}
    for c in raw.columns:
        if c in skip:
            continue
        s = raw[c].dropna().astype(str).str.strip()
        if len(s) == len(raw) and s.is_unique and pd.to_numeric(s, errors="coerce").isna().any():
            raise TabularError(
                f"{source}: column {c!r} has a different non-numeric value in every row: it looks like an ID (rule: "
                f"id_like). Set validate.source.tabular.id_column: {c} (the score file is then keyed by it), list "
                "it under drop, or set id_column: none to key rows by their row number")


def personal_columns(raw: pd.DataFrame, spec: TabularSpec, source: str) -> list[personal.Finding]:
    """Columns that are personal data (declared, by name or by content: ``features/personal.py``).

    A key that is personal data stops the source: it would travel into the features, MLflow and the score
    file, and cannot be dropped like a feature can.
    """
    if spec.id_column:
        hit = personal.by_content(raw[spec.id_column])
        if hit:
            raise TabularError(
                f"{source}: id_column {spec.id_column!r}: {hit[1]:.0%} of sampled values look like {hit[0]} "
                "values (rule: personal_key). A customer key must not be personal data: give a pseudonymous key "
                "(a salted hash, say), or leave id_column out to key rows by their row number")
    candidates = [c for c in raw.columns if c not in {spec.target, spec.id_column, *spec.drop}]
    return personal.find(raw, candidates, declared=spec.personal, not_personal=spec.not_personal)


def experiment_arms(raw: pd.DataFrame, spec: TabularSpec) -> pd.Series | None:
    """Each row's arm ('none' for the control group; null for a value that is neither: quarantined)."""
    if spec.experiment is None:
        return None
    e = spec.experiment
    value = raw[e.treatment].astype("string").str.strip()
    arms = e.arms or sorted(set(value.dropna().unique()) - {e.control})
    out = value.where(value.isin(arms)).astype(object)
    out[value == e.control] = "none"
    return out.where(out.notna(), None)


def arm_names(features: pd.DataFrame) -> list[str]:
    """The arms of a prepared experiment source (its treatment values other than the control)."""
    return sorted(str(a) for a in features["treatment"].dropna().unique() if a != "none")


def dictionary(cols: list[str], dtypes: dict[str, str], spec: TabularSpec) -> list[dict[str, Any]]:
    """The feature dictionary of a tabular source: its columns, described by the source's spec."""
    rows: list[dict[str, Any]] = []
    for c in cols:
        text = spec.describe.get(c, c)
        row = {"name": c, "family": "source", "dtype": dtypes[c], "window_days": None, "en": text,
               "zh": spec.describe_zh.get(c, text), "role": "feature"}
        if c in spec.labels:
            row["values"] = {v: lab.model_dump() for v, lab in spec.labels[c].items()}
        rows.append(row)
    en, zh = spec.outcome_words()
    rows.append({"name": spec.label_column, "family": "label", "dtype": "float", "window_days": None,
                 "en": f"Target: {en}", "zh": f"目标:{zh}({spec.target})", "role": "label"})
    return rows
