"""CRM score export: score files with readable reasons, a manifest, and loading into a database (stage ``export``).

``python -m pipelines.export`` writes ``data/scores/scores_<as_of>.csv`` (UTF-8 with BOM) and ``.parquet``,
one row per customer, and ``manifest_<as_of>.json`` (schema version, row count, SHA-256 of each file,
as_of, model versions, tier cut-points, creation time). The manifest is the commit marker: removed before
the files are replaced, written last (docs/score_file.md).

``python -m pipelines.export --to <database URL>`` loads the files of the manifest (verified against
their SHA-256) into a staging table in one transaction, keyed by (customer_id, as_of), and checks the row
count and a checksum before committing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.capabilities import Capabilities, for_source
from models import gbm, reasons
from models import segments as sg
from pipelines import paths, score_file, scoring
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, UserError, require
from pipelines.io import remove_stale_staging, staged_outputs
from pipelines.params import load_params

log = logging.getLogger("pipelines.export")
SEGMENTS, CUTPOINTS, REGISTRY = paths.SEGMENTS, paths.CUTPOINTS, paths.REGISTRY
FEATURES, DICTIONARY, SCORES = paths.FEATURES, paths.DICTIONARY, paths.SCORES
ZH = {"rule_quadrant": sg.QUADRANT_ZH, "ml_quadrant": sg.QUADRANT_ZH, "value_tier": sg.VALUE_TIER_ZH,
      "closeness": sg.CLOSENESS_ZH, "behaviour": sg.BEHAVIOUR_ZH}


def score_paths(as_of: dt.date, folder: Path = SCORES) -> dict[str, Path]:
    return {"csv": folder / f"scores_{as_of}.csv", "parquet": folder / f"scores_{as_of}.parquet",
            "manifest": folder / f"manifest_{as_of}.json"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def build_scores(seg: pd.DataFrame, scoring_rows: pd.DataFrame, dictionary: list[dict[str, Any]],
                 registry: dict[str, Any], models_dir: Path = scoring.MODELS,
                 columns: list[str] | None = None, reasons_model: str = "purchase") -> pd.DataFrame:
    """The score file's rows, in schema order, from the segment stage's table; reasons from ``reasons_model``
    (what the tiers rank by: a book's propensity model, a tabular source's primary target).
    ``columns``: a profile's columns (default: all); the segment table only needs to carry those."""
    names = columns or score_file.NAMES
    model = scoring.load_model(reasons_model, models_dir)
    rows = scoring_rows.set_index("customer_id").loc[seg["customer_id"]].reset_index()
    contrib = reasons.contributions(model.booster, gbm.design(rows, model.spec))
    why = reasons.top_reasons(contrib, rows, {d["name"]: d for d in dictionary}, k=score_file.N_REASONS)
    out = pd.DataFrame({"customer_id": seg["customer_id"].to_numpy(), "as_of": pd.to_datetime(seg["as_of"]).dt.date})
    for c in ("split_role", "p_purchase", "p_lapse", "expected_premium", "contact_value", "priority_tier"):
        if c in names:
            out[c] = seg[c].to_numpy()
    for c, zh in ZH.items():
        if c in names:
            out[c] = seg[c].to_numpy()
            out[f"{c}_zh"] = seg[c].map(zh).to_numpy()
    if "recommended_channel" in names:
        out["recommended_channel"] = seg["channel"].to_numpy()
        out["next_contact_date"] = seg["next_contact_date"].to_numpy()
        out["suppressed"] = seg["suppressed"].astype(bool).to_numpy()
        out["suppress_reason"] = seg["suppress_reason"].replace("", None).to_numpy()
        out["channel_uplift_purchase"] = seg["channel_tau_purchase"].to_numpy(float)
        out["channel_uplift_lapse"] = seg["channel_tau_lapse"].to_numpy(float)
        out["plan_reason"] = seg["plan_reason"].replace("", None).to_numpy()
        out["touches_planned"] = seg["touches_planned"].astype(int).to_numpy()
    for c in why.columns:
        out[c] = why[c].replace("", None).to_numpy()
    if "recommended_arm" in names:
        out["recommended_arm"] = seg["recommended_arm"].to_numpy()
        out["arm_uplift"] = seg["arm_uplift"].to_numpy(float)
        out["arm_value"] = seg["arm_value"].to_numpy(float)
    for m in registry["models"]:
        out[f"model_version_{m}"] = str(registry["models"][m]["version"])
    out["mlflow_run_id"] = str(registry["run_id"])
    return out[names]


def check_schema(df: pd.DataFrame, names: list[str] | None = None) -> None:
    """Our own output against the published schema (``names``: a profile's columns; default all): a failure
    here is a bug, never a CRM's problem."""
    problems = []
    names = names or score_file.NAMES
    if list(df.columns) != names:
        problems.append(f"columns {list(df.columns)} != schema {names}")
    for c in [*score_file.COLUMNS, *score_file.EXPERIMENT_COLUMNS]:
        if c.name not in df:
            continue
        col = df[c.name]
        if not c.nullable and col.isna().any():
            problems.append(f"{c.name}: {int(col.isna().sum())} null value(s) in a non-null column")
        if c.enum:
            bad = set(col.dropna()) - set(c.enum)
            if bad:
                problems.append(f"{c.name}: values outside the schema {sorted(bad)[:5]}")
        if c.type == "number":  # a NaN, an infinity or a probability outside [0, 1] never reaches a CRM
            x = pd.to_numeric(col, errors="coerce").to_numpy(float)
            bad_n = int((~np.isfinite(x) & col.notna().to_numpy()).sum())
            if bad_n:
                problems.append(f"{c.name}: {bad_n} NaN or infinite value(s)")
            if c.name.startswith("p_") and ((x < 0) | (x > 1)).any():
                problems.append(f"{c.name}: {int(((x < 0) | (x > 1)).sum())} probabilit(ies) outside [0, 1]")
    if df["customer_id"].duplicated().any():
        problems.append(f"customer_id: {int(df['customer_id'].duplicated().sum())} duplicate(s)")
    if problems:
        raise UserError("score file does not match schema " + score_file.SCHEMA_VERSION + ": " + "; ".join(problems))


def write_csv(df: pd.DataFrame, path: Path, delimiter: str) -> None:
    out = df.copy()
    if "suppressed" in out:
        out["suppressed"] = out["suppressed"].map({True: "true", False: "false"})
    out.to_csv(path, index=False, sep=delimiter, encoding="utf-8-sig", lineterminator="\n", float_format="%.10g")


def export(params_path: str) -> dict[str, Any]:
    params = load_params(params_path)
    require((SEGMENTS, CUTPOINTS, REGISTRY, FEATURES, DICTIONARY),
            "run the earlier stages first (dvc repro segment register)")
    as_of = params.book.as_of
    seg = pd.read_parquet(SEGMENTS)
    if (pd.to_datetime(seg["as_of"]).dt.date != as_of).any():
        raise InputError(f"{SEGMENTS} was built for another as-of date than book.as_of {as_of}: dvc repro segment")
    registry = json.loads(REGISTRY.read_text(encoding="utf-8"))
    cutpoints = json.loads(CUTPOINTS.read_text(encoding="utf-8"))
    df = scores_frame(seg, as_of, registry, caps=params.capabilities)
    tab = params.validate_.source.tabular
    outcome = None
    if tab is not None:
        words = [(t, *tab.outcome_words(t.target_kind)) for t in tab.targets()]
        described = [{"kind": t.target_kind, "column": t.target, "positive": t.positive, "en": en, "zh": zh,
                      "probability_column": f"p_{t.target_kind}"} for t, en, zh in words]
        outcome = described[0] | ({"other": described[1]} if len(described) > 1 else {})
    return deliver(df, as_of, registry, cutpoints, SCORES, params.export.delimiter, outcome)


def scores_frame(seg: pd.DataFrame, as_of: dt.date, registry: dict[str, Any],
                 models_dir: Path = scoring.MODELS, caps: Capabilities | None = None) -> pd.DataFrame:
    """Score-file rows for ``seg`` (the segment table of ``as_of``), reasons from ``models_dir``'s model;
    the columns of the source's profile (``caps``; default: a book's)."""
    caps = caps or for_source("tables", synthetic=False)
    name, cols = score_file.profile(caps)
    feats = pd.read_parquet(FEATURES)
    scoring_rows = scoring.scoring_rows(feats, as_of, caps)
    dictionary = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    log.info("building the score file for %s: %s customers (%s profile)", as_of, f"{len(seg):,}", name)
    names = [c.name for c in cols]
    df = build_scores(seg, scoring_rows, dictionary, registry, models_dir, names, reasons_model=caps.target)
    check_schema(df, names)
    return df


def deliver(df: pd.DataFrame, as_of: dt.date, registry: dict[str, Any], cutpoints: dict[str, Any], folder: Path,
            delimiter: str, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the CSV, Parquet and manifest of ``as_of`` into ``folder`` (manifest as the commit marker).
    ``outcome``: a tabular source's target in words, for the manifest (what the probability is of)."""
    target = score_paths(as_of, folder)
    remove_stale_staging(folder)
    with staged_outputs(marker=target["manifest"]) as out:
        staged = {"csv": out.path(target["csv"]), "parquet": out.path(target["parquet"])}
        write_csv(df, staged["csv"], delimiter)
        df.to_parquet(staged["parquet"], index=False)
        manifest = {
            "schema_version": score_file.SCHEMA_VERSION, "as_of": str(as_of), "rows": len(df),
            "files": {k: {"name": target[k].name, "sha256": sha256(p), "bytes": p.stat().st_size}
                      for k, p in staged.items()},
            "csv": {"encoding": "utf-8-sig", "delimiter": delimiter},
            "models": {m: {k: registry["models"][m][k] for k in ("name", "version", "uri")}
                       for m in registry["models"]},
            "mlflow_run_id": registry["run_id"],
            "profile": ("book" if list(df.columns) == score_file.NAMES else
                        "experiment" if "recommended_arm" in df.columns else
                        "propensity_retention" if {"p_purchase", "p_lapse"} <= set(df.columns) else
                        "propensity" if "p_purchase" in df.columns else "retention"),
            **({"target": outcome} if outcome else {}),
            "tier_cutpoints": _cutpoints(cutpoints),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "columns": list(df.columns),
        }
        out.json(manifest, target["manifest"])
    tiers = df["priority_tier"].value_counts().reindex(list(sg.TIERS), fill_value=0)
    suppressed = f"{int(df['suppressed'].sum()):,} suppressed" if "suppressed" in df else "no contact plan"
    log.info("wrote %s and %s (%s rows; %s; %s) and %s", target["csv"], target["parquet"].name,
             f"{len(df):,}", ", ".join(f"{t} {n:,}" for t, n in tiers.items()), suppressed, target["manifest"].name)
    return manifest


def _cutpoints(cutpoints: dict[str, Any]) -> dict[str, Any]:
    """The tier cut-points for the manifest: on contact value for a book, on p_purchase for a propensity set."""
    by = cutpoints.get("ranked_by", "contact_value")
    out: dict[str, Any] = {"mode": cutpoints.get("mode"), f"{by}_at_least": {
        t: c for t, c in zip(("P1", "P2", "P3"), cutpoints["tiers"], strict=True)}}
    if "ability" in cutpoints:
        out["ml_quadrant"] = {k: cutpoints[k] for k in ("ability", "willingness_high_ability",
                                                        "willingness_low_ability")}
    return out


def read_delivery(as_of: dt.date, folder: Path = SCORES) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The delivered rows of ``as_of``, after checking the files against their manifest."""
    target = score_paths(as_of, folder)
    if not target["manifest"].is_file():
        raise InputError(f"{target['manifest']} not found: no complete delivery for {as_of} "
                         "(run `dvc repro export` first)")
    manifest = json.loads(target["manifest"].read_text(encoding="utf-8"))
    for k in ("csv", "parquet"):
        f = folder / manifest["files"][k]["name"]
        if not f.is_file() or sha256(f) != manifest["files"][k]["sha256"]:
            raise InputError(f"{f} does not match its manifest {target['manifest'].name} (missing or changed "
                             "after export): re-run the export")
    df = pd.read_parquet(folder / manifest["files"]["parquet"]["name"])
    if len(df) != manifest["rows"]:
        raise InputError(f"{target['parquet']} has {len(df)} rows, the manifest says {manifest['rows']}")
    return df, manifest


def main(args: argparse.Namespace) -> None:
    if args.to is None:
        export(args.params)
        return
    from pipelines import crm_load

    params = load_params(args.params)
    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else params.book.as_of
    df, manifest = read_delivery(as_of)
    if manifest.get("profile", "book") != "book":
        raise UserError(f"the delivery for {as_of} has the {manifest['profile']!r} profile (a source without a "
                        "policy archive or contact history); database loading takes the book profile only: load "
                        f"{manifest['files']['csv']['name']} with your CRM's importer")
    result = crm_load.load(args.to, df, as_of, table=args.table or params.export.db.table,
                           schema=args.schema if args.schema is not None else params.export.db.schema_name)
    log.info("loaded %s rows for %s into %s (%s); checksum %s verified", f"{result['rows']:,}", as_of,
             result["table"], crm_load.redact(args.to), result["checksum"][:12])


def cli(argv: list[str] | None = None) -> int:
    parser = base_parser("export", __doc__)
    parser.add_argument("--to", metavar="DATABASE_URL", default=None,
                        help="load the delivered scores into this database (e.g. sqlite:///crm.db, "
                             "postgresql+psycopg://user@host/db) instead of exporting")
    parser.add_argument("--as-of", default=None, help="which delivery to load (default: book.as_of)")
    parser.add_argument("--table", default=None, help="staging table (default: export.db.table)")
    parser.add_argument("--schema", default=None, help="database schema (default: export.db.schema_name)")
    return run_stage("export", main, parser, argv)


if __name__ == "__main__":
    sys.exit(cli())

