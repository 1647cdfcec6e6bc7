"""Validate the raw tables against the data contract (DVC stage ``validate``).

Accepted rows go to ``data/interim/<table>.parquet`` without personal columns; rejected rows to
``data/interim/quarantine/<table>.parquet`` with the rule they broke; the reconciliation report
(input = accepted + quarantined, per table and rule) to ``data/reports/validation.json``. When a
table's reject share exceeds ``validate.max_reject_share`` the stage fails, naming table, column,
rule, count and sample keys, and writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from features.intake.chunked import chunkable
from features.intake.contract import TABLE_ORDER, TABLES, ContractError
from features.intake.keys import Ids, prepared
from features.intake.mapping import MappingError, apply_mapping
from features.intake.references import BIRTHS
from features.intake.tabular import TabularError, prepare
from features.intake.validation import (
    TableResult,
    add_customer_key,
    add_referral_key,
    customer_index,
    validate_table,
)
from pipelines import headline, interim, paths
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, RejectThresholdError
from pipelines.io import iter_table, read_table, staged_outputs
from pipelines.params import Params, load_params
from pipelines.validate_chunks import ChunkedResult, validate_in_chunks

log = logging.getLogger("pipelines.validate")
INTERIM, QUARANTINE, FINGERPRINTS = paths.INTERIM, paths.QUARANTINE, paths.FINGERPRINTS


# the tables another table's foreign keys point at: only their accepted keys are kept as parents
REFERENCED = frozenset(fk.table for t in TABLES.values() for fk in t.foreign_keys)


def reconciliation(results: Mapping[str, TableResult | ChunkedResult], max_share: float) -> dict[str, Any]:
    """Counts per table and rule; the report's ``reconciled`` says input = accepted + quarantined."""
    tables: dict[str, Any] = {}
    for name, r in results.items():
        tables[name] = {
            "input": r.n_input,
            "accepted": r.n_accepted,
            "quarantined": r.n_rejected,
            "reject_share": round(r.n_rejected / r.n_input, 6) if r.n_input else 0.0,
            "rules": {f"{rule}:{col}": n for (rule, col), n in sorted(r.rejects.items())},
            "reconciled": r.n_input == r.n_accepted + r.n_rejected,
        }
    return {"max_reject_share": max_share, "tables": tables,
            "reconciled": all(t["reconciled"] for t in tables.values())}


def check_threshold(results: Mapping[str, TableResult | ChunkedResult], max_share: float,
                    sources: dict[str, str] | None = None) -> None:
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
    FINGERPRINTS.unlink(missing_ok=True)
    roles = prep.features["role"].value_counts().to_dict()
    log.info("tabular: input %s = accepted %s + quarantined %s (%s); roles %s; %d feature columns",
             f"{prep.n_input:,}", f"{len(labelled):,}", f"{result.n_rejected:,}",
             ", ".join(f"{r}:{c} {n:,}" for (r, c), n in prep.rejects.items()) or "none", roles,
             sum(1 for d in prep.dictionary if d["role"] == "feature"))


def _enough_rows(n: int, name: str, path: Path, minimum: int) -> None:
    if n < minimum:
        raise InputError(f"{path} (table '{name}') has {n:,} data row(s); validate.min_rows.{name} asks for at "
                         f"least {minimum:,} (rule: min_rows). A header-only or truncated export is not a book.")


Result = TableResult | ChunkedResult


def _read_chunks(params: Params, name: str) -> tuple[Iterator[pd.DataFrame] | None, Path, bool]:
    """The table's rows, mapped onto the contract, in chunks of ``validate.chunk_rows`` (one chunk for a table
    that cannot be chunked); (None, path, mapped) for an absent optional table."""
    src, spec = params.validate_.source, TABLES[name]
    m = src.tables.get(name)
    fmt = m.format if m and m.format else src.format
    encoding = m.encoding if m and m.encoding else src.encoding
    delimiter = m.delimiter if m and m.delimiter else src.delimiter
    file = m.file if m else None
    if chunkable(spec):
        chunks, path = iter_table(src.dir, name, fmt, params.validate_.chunk_rows, encoding, delimiter,
                                  required=spec.required, file=file)
    else:
        df, path = read_table(src.dir, name, fmt, encoding, delimiter, required=spec.required, file=file)
        chunks = None if df is None else iter([df])
    if chunks is None or m is None:
        return chunks, path, False

    def mapped(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for df in frames:
            try:
                out = apply_mapping(df, m, spec, str(path))
            except MappingError as e:
                raise InputError(str(e)) from None
            out.attrs = df.attrs
            yield out
    return mapped(chunks), path, True


def _counted(frames: Iterator[pd.DataFrame], counts: list[int]) -> Iterator[pd.DataFrame]:
    """The frames, appending each one's blank lines to ``counts`` as it passes."""
    for df in frames:
        counts.append(int(df.attrs.get("blank_lines", 0)))
        yield df


def validate_tables(params: Params, scratch: Path) -> tuple[dict[str, Result], dict[str, str], dict[str, int]]:
    """Each table in dependency order: in memory when it reads in one chunk, chunk by chunk otherwise (its
    accepted rows then wait in ``scratch``). Returns results, source files and blank lines per table."""
    v, as_of = params.validate_, params.book.as_of
    results: dict[str, Result] = {}
    sources: dict[str, str] = {}
    blank_lines: dict[str, int] = {}
    parents: dict[str, Ids] = {}
    customers: Ids | None = None
    for name in TABLE_ORDER:
        spec = TABLES[name]
        chunks, path, is_mapped = _read_chunks(params, name)
        if chunks is None:
            if spec.required:
                raise ContractError(f"required table '{name}' is missing")
            continue
        sources[name] = str(path)
        first = next(chunks, pd.DataFrame(columns=spec.column_names))
        second = next(chunks, None)
        counted = [int(first.attrs.get("blank_lines", 0))]
        if second is None:
            _enough_rows(len(first), name, path, v.min_rows.get(name, 0))
            table = validate_table(first, spec, as_of, parents=parents, source=str(path))
            if customers is not None:
                add_customer_key(table.accepted, customers)
            res: Result = table
        else:
            log.info("%s: more than %s rows, validated in chunks", name, f"{v.chunk_rows:,}")
            rest = _counted(itertools.chain([second], chunks), counted)
            res = validate_in_chunks(itertools.chain([first], rest), spec, as_of, parents, str(path), customers,
                                     scratch / name, v.memory_limit)
            _enough_rows(res.n_input, name, path, v.min_rows.get(name, 0))
        blank_lines[name] = sum(counted)
        results[name] = res
        if name in REFERENCED:  # converted once for every chunk's lookups; contacts' 85M keys at 5M, never read
            parents[name] = prepared(res.accepted[spec.key] if isinstance(res, TableResult) else
                                     res.accepted_keys(spec.key))
        if name == "customers" and isinstance(res, TableResult):  # customers refer to each other: never chunked
            parents[BIRTHS] = res.accepted.set_index("customer_id")["birth_date"]
            customers = prepared(customer_index(res.accepted))
            add_customer_key(res.accepted, customers)
            add_referral_key(res.accepted, customers)
        log.info("read %s: %s rows from %s%s", name, f"{res.n_input:,}", path, " (mapped)" if is_mapped else "")
    return results, sources, blank_lines


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    src = params.validate_.source
    if src.kind == "tabular":
        validate_tabular(params)
        return
    scratch = paths.VALIDATE_SCRATCH
    try:
        results, sources, blank_lines = validate_tables(params, scratch)
        publish(params, results, sources, blank_lines)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish(params: Params, results: dict[str, Result], sources: dict[str, str], blank_lines: dict[str, int],
            ) -> None:
    """Check the reject threshold, then write every table, its quarantine and the report together."""
    check_threshold(results, params.validate_.max_reject_share, sources)
    report = reconciliation(results, params.validate_.max_reject_share)
    report["as_of"] = str(params.book.as_of)
    report["source"] = params.validate_.source.model_dump()
    for name, n in blank_lines.items():  # skipped before validation: counted here, not in input
        report["tables"][name]["blank_lines"] = n
    with staged_outputs() as out:
        staged = {}
        for name, r in results.items():
            staged[name] = out.path(INTERIM / f"{name}.parquet")
            if isinstance(r, ChunkedResult):
                os.replace(r.accepted_file, staged[name])
                os.replace(r.quarantine_file, out.path(QUARANTINE / f"{name}.parquet"))
            else:
                r.accepted.to_parquet(staged[name], index=False)
                out.parquet(r.quarantine, QUARANTINE / f"{name}.parquet")
        out.json(_fingerprints(staged, params.validate_.memory_limit), FINGERPRINTS)
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


def _fingerprints(staged: Mapping[str, Path], memory_limit: str) -> dict[str, Any]:
    """The day sums of the tables the snapshots read, taken here where the tables are written: a monthly features
    run then keys its snapshot cache without scanning the whole history again (``pipelines.interim``)."""
    ts = time.perf_counter()
    doc = interim.take_fingerprints({t: staged[t] for t in interim.CASTS if t in staged}, memory_limit)
    log.info("fingerprinted the validated tables for the features stage's snapshot cache in %.1fs",
             time.perf_counter() - ts)
    return doc


def cli(argv: list[str] | None = None) -> int:
    return run_stage("validate", main, base_parser("validate", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
