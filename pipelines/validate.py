"""Validate the raw tables against the data contract (DVC stage ``validate``).

Accepted rows go to ``data/interim/<table>.parquet`` without personal columns; rejected rows to
``data/interim/quarantine/<table>.parquet`` with the rule they broke; the reconciliation report
(input = accepted + quarantined, per table and rule) to ``data/reports/validation.json``. When a
table's reject share exceeds ``validate.max_reject_share`` the stage fails, naming table, column,
rule, count and sample keys, and writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from features.intake.contract import TABLE_ORDER, TABLES
from features.intake.mapping import MappingError, apply_mapping
from features.intake.tabular import TabularError, prepare
from features.intake.validation import TableResult, validate_book
from pipelines import headline, paths
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, RejectThresholdError
from pipelines.io import read_table, staged_outputs
from pipelines.params import Params, load_params

log = logging.getLogger("pipelines.validate")
INTERIM, QUARANTINE = paths.INTERIM, paths.QUARANTINE


def reconciliation(results: dict[str, TableResult], max_share: float) -> dict[str, Any]:
    """Counts per table and rule; the report's ``reconciled`` says input = accepted + quarantined."""
    tables: dict[str, Any] = {}
    for name, r in results.items():
        tables[name] = {
            "input": r.n_input,
            "accepted": len(r.accepted),
            "quarantined": r.n_rejected,
            "reject_share": round(r.n_rejected / r.n_input, 6) if r.n_input else 0.0,
            "rules": {f"{rule}:{col}": n for (rule, col), n in sorted(r.rejects.items())},
            "reconciled": r.n_input == len(r.accepted) + r.n_rejected,
        }
    return {"max_reject_share": max_share, "tables": tables,
            "reconciled": all(t["reconciled"] for t in tables.values())}


def check_threshold(results: dict[str, TableResult], max_share: float, sources: dict[str, str] | None = None) -> None:
    """Stop, naming table, file, column, rule, count and sample keys, when a table rejects too much."""
    problems = []
    for name, r in results.items():
        if r.n_input and r.n_rejected / r.n_input > max_share:
            worst = sorted(r.rejects.items(), key=lambda kv: -kv[1])[:5]
            detail = "; ".join(
                f"column '{col}' rule '{rule}': {n:,} rows (e.g. {', '.join(r.sample_keys(rule, col))})"
                for (rule, col), n in worst)
            where = f" ({sources[name]})" if sources and name in sources else ""
            problems.append(f"table '{name}'{where}: {r.n_rejected:,} of {r.n_input:,} rows rejected "
                            f"({r.n_rejected / r.n_input:.2%} > {max_share:.2%}): {detail}")
    if problems:
        raise RejectThresholdError(
            "too many rejected rows, nothing written:\n  " + "\n  ".join(problems)
            + "\nFix the source, or raise validate.max_reject_share if these rows may be dropped.")


TABULAR, TABULAR_DICTIONARY = paths.TABULAR, paths.TABULAR_DICTIONARY


def read_tabular(params: Params) -> tuple[pd.DataFrame, Path, pd.DataFrame | None]:
    """The tabular source file (and its score file, when it has one) as text columns."""
    src = params.validate_.source
    spec = src.tabular
    assert spec is not None  # SourceParams guarantees it for kind: tabular
    names = spec.names if not spec.header else None

    def read(file: str, cols: list[str] | None) -> pd.DataFrame:
        df, path = read_table(src.dir, "tabular", src.format, src.encoding, src.delimiter, file=file, names=cols)
        assert df is not None  # required: a missing file is an InputError
        log.info("read %s rows from %s", f"{len(df):,}", path)
        return df

    score_names = [n for n in names if n != spec.target] if names else None
    return (read(spec.file, names), Path(src.dir) / spec.file,
            read(spec.score_file, score_names) if spec.score_file else None)


def validate_tabular(params: Params) -> None:
    """A tabular source: validate the target and key, type the columns, assign each row its split role."""
    spec = params.validate_.source.tabular
    assert spec is not None
    raw, path, score_raw = read_tabular(params)
    try:
        prep = prepare(raw, spec, params.book.as_of, str(path), score_raw)
    except TabularError as e:
        raise InputError(str(e)) from None
    labelled = prep.features[prep.features["role"] != "score"]
    result = TableResult("tabular", accepted=labelled, quarantine=prep.quarantine, n_input=prep.n_input,
                         rejects=prep.rejects, key_column="row")
    max_share = params.validate_.max_reject_share
    check_threshold({"tabular": result}, max_share, {"tabular": str(path)})
    report = reconciliation({"tabular": result}, max_share)
    report["tables"]["tabular"]["score_rows"] = len(prep.features) - len(labelled)
    report["as_of"] = str(params.book.as_of)
    report["source"] = params.validate_.source.model_dump()
    report["personal_columns_dropped"] = [{"column": f.column, "kind": f.kind, "rule": f.rule} for f in prep.personal]
    for f in prep.personal:  # names and rules only: a value never reaches a log
        if f.kind == "declared":
            log.info("%s: column %s dropped (declared personal)", path, f.column)
        else:
            log.warning("%s: column %s dropped as personal data (%s, %s). Declare it under "
                        "validate.source.tabular.personal to confirm, or not_personal if it is not.",
                        path, f.column, f.kind, f.rule)
    with staged_outputs() as out:
        out.parquet(prep.features, TABULAR)
        out.json(prep.dictionary, TABULAR_DICTIONARY)
        out.parquet(prep.quarantine, QUARANTINE / "tabular.parquet")
        headline.write(out, "validation", report)
    for name in TABLE_ORDER:  # a book validated earlier in this folder is not this source
        for p in (INTERIM / f"{name}.parquet", QUARANTINE / f"{name}.parquet"):
            p.unlink(missing_ok=True)
    roles = prep.features["role"].value_counts().to_dict()
    log.info("tabular: input %s = accepted %s + quarantined %s (%s); roles %s; %d feature columns",
             f"{prep.n_input:,}", f"{len(labelled):,}", f"{result.n_rejected:,}",
             ", ".join(f"{r}:{c} {n:,}" for (r, c), n in prep.rejects.items()) or "none", roles,
             sum(1 for d in prep.dictionary if d["role"] == "feature"))


def _enough_rows(df: pd.DataFrame, name: str, path: Path, minimum: int) -> None:
    if len(df) < minimum:
        raise InputError(f"{path} (table '{name}') has {len(df):,} data row(s); validate.min_rows.{name} asks for at "
                         f"least {minimum:,} (rule: min_rows). A header-only or truncated export is not a book.")


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    src = params.validate_.source
    if src.kind == "tabular":
        validate_tabular(params)
        return
    raw, sources, blank_lines = {}, {}, {}
    for name in TABLE_ORDER:
        spec = TABLES[name]
        m = src.tables.get(name)
        fmt = (m.format if m and m.format else src.format)
        df, path = read_table(src.dir, name, fmt, (m.encoding if m and m.encoding else src.encoding),
                              (m.delimiter if m and m.delimiter else src.delimiter), required=spec.required,
                              file=m.file if m else None)
        if df is not None:
            _enough_rows(df, name, path, params.validate_.min_rows.get(name, 0))
            blank_lines[name] = int(df.attrs.get("blank_lines", 0))
            if m is not None:
                try:
                    df = apply_mapping(df, m, spec, str(path))
                except MappingError as e:
                    raise InputError(str(e)) from None
            raw[name], sources[name] = df, str(path)
            log.info("read %s: %s rows from %s%s", name, f"{len(df):,}", path, " (mapped)" if m else "")
    results = validate_book(raw, params.book.as_of, sources)
    check_threshold(results, params.validate_.max_reject_share, sources)
    report = reconciliation(results, params.validate_.max_reject_share)
    report["as_of"] = str(params.book.as_of)
    report["source"] = src.model_dump()
    for name, n in blank_lines.items():  # skipped before validation: counted here, not in input
        report["tables"][name]["blank_lines"] = n
    with staged_outputs() as out:
        for name, r in results.items():
            out.parquet(r.accepted, INTERIM / f"{name}.parquet")
            out.parquet(r.quarantine, QUARANTINE / f"{name}.parquet")
        headline.write(out, "validation", report)
    # an optional table that is gone, or a tabular source validated earlier here, must not leave files behind
    for p in (TABULAR, TABULAR_DICTIONARY, QUARANTINE / "tabular.parquet"):
        p.unlink(missing_ok=True)
    for name in (n for n in TABLE_ORDER if n not in results):
        for p in (INTERIM / f"{name}.parquet", QUARANTINE / f"{name}.parquet"):
            p.unlink(missing_ok=True)
    for name, t in report["tables"].items():
        rules = ", ".join(f"{k} {v:,}" for k, v in t["rules"].items()) or "none"
        log.info("%-9s input %9s = accepted %9s + quarantined %6s (%s)", name, f"{t['input']:,}",
                 f"{t['accepted']:,}", f"{t['quarantined']:,}", rules)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("validate", main, base_parser("validate", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
