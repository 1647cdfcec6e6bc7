"""Tabular sources: one row per customer (or per contact) whose columns already are the features.

Public benchmark data (UCI Bank Marketing, CoIL Challenge 2000) and many "analytical base tables" a
bank exports come this way: no customer archive and contact history to build point-in-time features
from, but a file with one row per case, a target column, and, when the rows are in time order, a way to
tell which period each row belongs to. ``TabularSpec`` (features/intake/tabular_spec.py) declares that shape;
``prepare`` validates it and returns the same feature table the book path writes (``customer_id``,
``snapshot_date``, the features, and ``purchase_h`` and/or ``lapse_h``: one per declared target) plus the
``role`` of each row in the split, and a feature dictionary built from the columns. Validation follows the
contract's rules: a target value that is neither positive nor negative is quarantined with its rule, column
and count, never guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.intake import personal
from features.intake.capabilities import LABELS
from features.intake.tabular_spec import ExperimentSpec, OtherTarget, SplitShares, TabularSpec, ValueLabel

__all__ = ["ExperimentSpec", "OtherTarget", "Prepared", "SplitShares", "TabularError", "TabularSpec", "ValueLabel",
           "prepare"]

MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                      "nov", "dec"), start=1)}


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


def _hashed_unit(keys: pd.Series, seed: int) -> np.ndarray:
    """A stable uniform number per key: the same row gets the same number on every run, in any row order."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}#{k}".encode(), digest_size=8).digest(), "big")
                     for k in keys], dtype=np.float64) / 2.0**64


def _roles_hashed(keys: pd.Series, s: SplitShares, seed: int) -> np.ndarray:
    """A stable random split by hashed key: the same row lands in the same role on every run."""
    u = _hashed_unit(keys, seed)
    cuts = np.cumsum([s.valid, s.calib, s.test])
    return np.select([u < cuts[0], u < cuts[1], u < cuts[2]], ["valid", "calib", "test"], "train").astype(object)


def crossfit_folds(keys: pd.Series, label: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stable, stratified folds: within each label value rows are ordered by their hashed key and dealt out in
    turn, so every fold holds the same share of positives and a row keeps its fold on every run."""
    u = _hashed_unit(keys, seed)
    out = np.empty(len(u), dtype=np.int64)
    for value in np.unique(label):
        idx = np.flatnonzero(label == value)
        out[idx[np.argsort(u[idx], kind="stable")]] = np.arange(len(idx)) % folds
    return out


def uses_crossfit(spec: TabularSpec, labelled_rows: int) -> bool:
    """Cross-fit a small file without time order; a time-ordered file keeps its out-of-time split, and an
    experiment file its split (the uplift learners stop early and are judged on held-out arms)."""
    return (spec.time_order == "none" and spec.experiment is None
            and labelled_rows <= spec.split.crossfit_max_rows)


def _check_columns(df: pd.DataFrame, spec: TabularSpec, source: str, with_target: bool) -> None:
    named = {t.target for t in spec.targets()} if with_target else set()
    named |= set(spec.drop) | set(spec.categorical) | set(spec.missing) | set(spec.describe) | set(spec.not_personal)
    named |= set(spec.describe_zh) | set(spec.labels)
    named |= {c for c in (spec.id_column, spec.month_column, spec.premium_column) if c}
    if spec.experiment and with_target:
        named |= {spec.experiment.treatment, *spec.experiment.modifiers}
    # personal columns a spec drops may be absent (a later export without them is fine)
    absent = sorted(c for c in named - set(df.columns) if not (c in spec.drop and personal.by_name(c)))
    if not with_target:
        absent = [c for c in absent if c not in {t.target for t in spec.targets()}]
    if absent:
        raise TabularError(f"{source}: validate.source.tabular names columns that are not in the file: {absent}. "
                           f"The file has: {', '.join(map(str, df.columns[:40]))}")


def feature_columns(df: pd.DataFrame, spec: TabularSpec, hidden: list[str] | None = None) -> list[str]:
    """The columns that become features: all but the target, key, dropped and personal (``hidden``) ones."""
    skip = {*(t.target for t in spec.targets()), spec.id_column, *spec.drop, *(hidden or [])}
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
    rejects: dict[tuple[str, str], int] = {}
    reasons = pd.Series(None, index=raw.index, dtype=object)
    labels: dict[str, pd.Series] = {}
    for t in reversed(spec.targets()):  # a row with two bad flags is counted once, under the primary target
        value = raw[t.target].astype("string").str.strip()
        labels[LABELS[t.target_kind]] = value.isin(t.positive)
        reasons[~(value.isin(t.positive) | value.isin(t.negative))] = f"allowed_values:{t.target}"
    dup = keys.duplicated(keep="first") & reasons.isna()
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
    for label, is_pos in labels.items():
        labelled[label] = is_pos.astype("float64")
    if arm is not None:
        labelled["treatment"] = arm.to_numpy()
    labelled = labelled[keep.to_numpy()].reset_index(drop=True)
    if uses_crossfit(spec, len(labelled)):  # every labelled row trains the final model; ``fold`` scores it
        labelled.insert(2, "role", "train")
        labelled["fold"] = crossfit_folds(labelled["customer_id"], labelled[spec.label_column].to_numpy(),
                                          spec.split.folds, spec.seed).astype("float64")
    else:
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
        for c, kind in dtypes.items():  # the training file decides a column's type
            if kind == "float":
                st[c] = pd.to_numeric(st[c], errors="coerce").astype("float64")
        scored = pd.DataFrame({"customer_id": skeys, "snapshot_date": as_of, "role": "score"}).join(st)
        for label in labels:
            scored[label] = np.nan
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
    skip = {*(t.target for t in spec.targets()), *spec.drop, *hidden}
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
    """Columns that are personal data (declared, by name or by content: ``features/intake/personal.py``).

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
    skip = {*(t.target for t in spec.targets()), spec.id_column, *spec.drop}
    candidates = [c for c in raw.columns if c not in skip]
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
        row: dict[str, Any] = {"name": c, "family": "source", "dtype": dtypes[c], "window_days": None, "en": text,
               "zh": spec.describe_zh.get(c, text), "role": "feature"}
        if c in spec.labels:
            row["values"] = {v: lab.model_dump() for v, lab in spec.labels[c].items()}
        rows.append(row)
    for tgt in spec.targets():
        en, zh = spec.outcome_words(tgt.target_kind)
        rows.append({"name": LABELS[tgt.target_kind], "family": "label", "dtype": "float", "window_days": None,
                     "en": f"Target: {en}", "zh": f"目标:{zh}({tgt.target})", "role": "label"})
    return rows
