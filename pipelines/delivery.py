"""The score delivery: the score file's rows with readable reasons, and the CSV, Parquet and manifest of one as-of
written with the manifest as the commit marker (docs/score_file.md), or read back and checked against it.

Shared wiring: the export stage writes ``data/scores/``, and retraining delivers the winner's files to
``retrain.delivery_dir`` with the same functions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.intake.capabilities import Capabilities, for_source
from features.intake.keys import mapped, positions
from models import gbm, reasons
from models import segments as sg
from pipelines import csv_out, paths, score_file, scoring, tracking
from pipelines.errors import InputError, UserError
from pipelines.io import remove_stale_staging, staged_outputs
from pipelines.params import Params

log = logging.getLogger("pipelines.export")  # the stage that runs it
SEGMENTS, CUTPOINTS, REGISTRY = paths.SEGMENTS, paths.CUTPOINTS, paths.REGISTRY
FEATURES, DICTIONARY, SCORES = paths.FEATURES, paths.DICTIONARY, paths.SCORES
ZH = {"rule_quadrant": sg.QUADRANT_ZH, "ml_quadrant": sg.QUADRANT_ZH, "value_tier": sg.VALUE_TIER_ZH,
      "closeness": sg.CLOSENESS_ZH, "behaviour": sg.BEHAVIOUR_ZH}
# the segment table's columns a score file is built from (the rest, e.g. each channel's effect and value, are not
# read: at 5M customers they were half the table)
SCORE_INPUTS = ("customer_id", "as_of", "split_role", "p_purchase", "p_lapse", "expected_premium", "contact_value",
                "priority_tier", *ZH, "channel", "next_contact_date", "suppressed", "suppress_reason",
                "channel_tau_purchase", "channel_tau_lapse", "plan_reason", "touches_planned", "recommended_arm",
                "arm_uplift", "arm_value")
REASON_CHUNK = 100_000  # rows explained at a time (bounded memory, progress on a large book)


def read_segments(path: Path = SEGMENTS) -> pd.DataFrame:
    """The segment table's columns a score file needs (``SCORE_INPUTS`` that it has)."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in SCORE_INPUTS if c in names])


def score_paths(as_of: dt.date, folder: Path = SCORES) -> dict[str, Path]:
    return {"csv": folder / f"scores_{as_of}.csv", "parquet": folder / f"scores_{as_of}.parquet",
            "manifest": folder / f"manifest_{as_of}.json"}


def build_scores(seg: pd.DataFrame, scoring_rows: pd.DataFrame, dictionary: list[dict[str, Any]],
                 registry: dict[str, Any], models_dir: Path = scoring.MODELS,
                 columns: list[str] | None = None, reasons_model: str = "purchase",
                 explain: np.ndarray | None = None) -> pd.DataFrame:
    """The score file's rows, in schema order, from the segment stage's table; reasons from ``reasons_model``
    (what the tiers rank by: a book's propensity model, a tabular source's primary target) for the rows of
    ``explain`` (a mask over ``seg``; default every row), empty for the others.
    ``columns``: a profile's columns (default: all); the segment table only needs to carry those."""
    names = columns or score_file.NAMES
    model = scoring.load_model(reasons_model, models_dir)
    wanted = seg["customer_id"] if explain is None else seg["customer_id"][explain]
    at = positions(wanted, scoring_rows["customer_id"])  # no indexed copy of the snapshot
    if (at < 0).any():
        raise InputError(f"{int((at < 0).sum()):,} customer(s) of the segment table have no row in {FEATURES} at "
                         f"{seg['as_of'].iloc[0]} (e.g. {wanted[at < 0].iloc[0]}): re-run the segment stage")
    why = _reasons(model, scoring_rows, at, {d["name"]: d for d in dictionary})
    # columns gathered first and framed once: inserting ~40 columns one by one fragments a 5M-row frame. Text
    # columns are passed as their (Arrow) arrays, not as Python objects per value, and framed with their dtype.
    out: dict[str, Any] = {"customer_id": _column(seg["customer_id"]),
                           "as_of": pd.to_datetime(seg["as_of"]).dt.date.to_numpy()}
    for c in ("split_role", "p_purchase", "p_lapse", "expected_premium", "contact_value", "priority_tier"):
        if c in names:
            out[c] = _column(seg[c])
    for c, zh in ZH.items():
        if c in names:
            out[c] = _column(seg[c])
            out[f"{c}_zh"] = _column(mapped(seg[c], zh))
    if "recommended_channel" in names:
        out["recommended_channel"] = _column(seg["channel"])
        out["next_contact_date"] = seg["next_contact_date"].to_numpy()
        out["suppressed"] = seg["suppressed"].astype(bool).to_numpy()
        out["suppress_reason"] = _column(seg["suppress_reason"].replace("", None))
        out["channel_uplift_purchase"] = seg["channel_tau_purchase"].to_numpy(float)
        out["channel_uplift_lapse"] = seg["channel_tau_lapse"].to_numpy(float)
        out["plan_reason"] = _column(seg["plan_reason"].replace("", None))
        out["touches_planned"] = seg["touches_planned"].astype(int).to_numpy()
    # a row's reasons do not depend on the others: each row's place among the explained, or a null past their end
    slot = None if explain is None else np.where(explain, np.cumsum(explain) - 1, int(explain.sum()))
    for c in why.columns:
        out[c] = _reason_column(why[c], slot)
    if "recommended_arm" in names:
        out["recommended_arm"] = seg["recommended_arm"].to_numpy()
        out["arm_uplift"] = seg["arm_uplift"].to_numpy(float)
        out["arm_value"] = seg["arm_value"].to_numpy(float)
    for m in registry["models"]:
        out[f"model_version_{m}"] = str(registry["models"][m]["version"])
    out["mlflow_run_id"] = str(registry["run_id"])
    frame = pd.DataFrame(out)
    return frame[names]


def _column(s: pd.Series) -> Any:
    """A segment column for the score frame: a text column as its array (no Python object per value), any other
    as NumPy values; either way without the segment table's index."""
    return s.array if isinstance(s.dtype, pd.StringDtype) else s.to_numpy()


def _reason_column(explained: pd.Series, at: np.ndarray | None) -> pd.api.extensions.ExtensionArray:
    """One reason column of the score file, in Arrow: an empty reason is a null cell, and so is every row not
    explained (``at``: each row's position among the explained ones, or past their end)."""
    text = pa.array(explained, from_pandas=True)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    if at is not None:
        text = pc.take(pa.concat_arrays([text, pa.nulls(1, text.type)]), pa.array(at))
    return pd.array(text, dtype="str")


def _reasons(model: scoring.LoadedModel, rows: pd.DataFrame, at: np.ndarray, dictionary: dict[str, dict[str, Any]],
             chunk: int = REASON_CHUNK) -> pd.DataFrame:
    """The reasons of ``rows``' rows at positions ``at``, in that order, ``chunk`` rows at a time: a row's
    contributions and reasons do not depend on the others, so the result is the same, the contributions and the
    object copy of the values stay bounded (at 1M customers the whole-table copy peaked near 12 GiB), and a long
    export says how far it is. A chunk's TreeSHAP (NumPy, mostly without Python's lock) runs in a thread while
    the previous chunk's reasons are worded (mostly Python), so the two share the cores."""
    parts, started = [], time.perf_counter()

    def worded(contrib: Future[pd.DataFrame], part: pd.DataFrame, done: int) -> None:
        parts.append(reasons.top_reasons(contrib.result(), part, dictionary, k=score_file.N_REASONS))
        if len(at) > chunk:
            log.info("reasons: %s of %s customers (%.0f s)", f"{done:,}", f"{len(at):,}", time.perf_counter() - started)

    with ThreadPoolExecutor(1) as pool:
        previous: tuple[Future[pd.DataFrame], pd.DataFrame, int] | None = None
        for start in range(0, len(at), chunk):
            part = rows.iloc[at[start:start + chunk]]
            contrib = pool.submit(reasons.contributions, model.booster, gbm.design(part, model.spec),
                                  model.meta.get("linear_centre"))
            if previous is not None:
                worded(*previous)
            previous = (contrib, part, min(start + chunk, len(at)))
        if previous is not None:
            worded(*previous)
    if not parts:
        return reasons.top_reasons(pd.DataFrame(columns=model.spec.columns, dtype=float), rows.iloc[:0], dictionary,
                                   k=score_file.N_REASONS)
    return pd.concat(parts).set_axis(range(len(at)))


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
            bad = set(col.dropna().unique()) - set(c.enum)  # unique first: a 1M-row column, a handful of values
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


def write_csv(df: pd.DataFrame, path: Path, delimiter: str) -> str:
    """UTF-8 with BOM, booleans ``true``/``false``, floats ``%.10g``: pandas' bytes, written in Arrow
    (pipelines/csv_out.py); returns the file's SHA-256."""
    out = df
    if "suppressed" in out:  # no copy of the other columns (copy-on-write)
        words = pc.take(pa.array(["false", "true"]), pa.array(out["suppressed"].to_numpy(bool).astype(np.int8)))
        out = out.assign(suppressed=pd.Series(pd.arrays.ArrowStringArray(words), index=out.index))  # no objects
    return csv_out.write_csv(out, path, delimiter, float_format="%.10g", bom=True)


def write_files(df: pd.DataFrame, csv: Path, parquet: Path, delimiter: str) -> dict[str, str]:
    """The score file as CSV and as Parquet, and each file's SHA-256 (for the manifest). The Parquet file and its
    digest are made in a thread beside the CSV, which is hashed as it is written: Arrow's writer and ``hashlib``
    release Python's lock, and at 5M customers the two files and their digests were about 30 s of the export,
    one after another on one core. The bytes are the same either way."""
    def parquet_file() -> str:
        df.to_parquet(parquet, index=False)
        return tracking.fingerprint(parquet)

    with ThreadPoolExecutor(1) as pool:
        parquet_done = pool.submit(parquet_file)
        return {"csv": write_csv(df, csv, delimiter), "parquet": parquet_done.result()}


def scores_frame(seg: pd.DataFrame, as_of: dt.date, registry: dict[str, Any], params: Params,
                 models_dir: Path = scoring.MODELS, caps: Capabilities | None = None) -> pd.DataFrame:
    """Score-file rows for ``seg`` (the segment table of ``as_of``), reasons from ``models_dir``'s model for
    the customers ``export.reasons`` names; the columns of the source's profile (``caps``; default: a book's)."""
    caps = caps or for_source("tables", synthetic=False)
    name, cols = score_file.profile(caps)
    dictionary = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    names = [c.name for c in cols]
    explain: np.ndarray | None = None
    scope: dict[str, Any] = {"customers": "all"}
    if params.export.reasons.customers == "acted":
        channels = list(params.segment.capacity.per_agent_per_week) if "channel" in seg else []
        explain = reasons.to_explain(seg["priority_tier"], seg["channel"] if channels else None,
                                     params.export.reasons.tiers, channels)
        scope = {"customers": "acted", "tiers": list(params.export.reasons.tiers), "planned_channels": channels}
    # a book's rows of the customers explained only; every row otherwise (all explained, or a small tabular file)
    scoring_rows = (scoring.read_customers(FEATURES, as_of, seg["customer_id"][explain].tolist())
                    if explain is not None and caps.snapshots else scoring.read_scoring_rows(FEATURES, as_of, caps))
    by = [f"tiers {'/'.join(params.export.reasons.tiers)}"] * bool(params.export.reasons.tiers) + \
        [f"planned {'/'.join(scope['planned_channels'])} touches"] * bool(scope.get("planned_channels"))
    log.info("building the score file for %s: %s customers (%s profile), reasons for %s", as_of, f"{len(seg):,}",
             name, "all" if explain is None else f"{int(explain.sum()):,} (export.reasons: {' and '.join(by)})")
    df = build_scores(seg, scoring_rows, dictionary, registry, models_dir, names, reasons_model=caps.target,
                      explain=explain)
    check_schema(df, names)
    df.attrs["reasons"] = scope | {"rows": len(df) if explain is None else int(explain.sum())}  # for the manifest
    return df


def deliver(df: pd.DataFrame, as_of: dt.date, registry: dict[str, Any], cutpoints: dict[str, Any], folder: Path,
            delimiter: str, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the CSV, Parquet and manifest of ``as_of`` into ``folder`` (manifest as the commit marker).
    ``outcome``: a tabular source's target in words, for the manifest (what the probability is of); which rows
    carry reasons comes from ``scores_frame`` (``df.attrs["reasons"]``)."""
    target = score_paths(as_of, folder)
    remove_stale_staging(folder)
    with staged_outputs(marker=target["manifest"]) as out:
        staged = {"csv": out.path(target["csv"]), "parquet": out.path(target["parquet"])}
        digests = write_files(df, staged["csv"], staged["parquet"], delimiter)
        manifest = {
            "schema_version": score_file.SCHEMA_VERSION, "as_of": str(as_of), "rows": len(df),
            "files": {k: {"name": target[k].name, "sha256": digests[k], "bytes": p.stat().st_size}
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
            "reasons": df.attrs.get("reasons", {"customers": "all", "rows": len(df)}),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "columns": list(df.columns),
        }
        out.json(manifest, target["manifest"])
    tiers = df["priority_tier"].value_counts().reindex(list(sg.TIERS), fill_value=0)
    suppressed = f"{int(df['suppressed'].sum()):,} suppressed" if "suppressed" in df else "no contact plan"
    log.info("wrote %s and %s (%s rows; %s; %s) and %s", target["csv"], target["parquet"].name,
             f"{len(df):,}", ", ".join(f"{t} {n:,}" for t, n in tiers.items()), suppressed, target["manifest"].name)
    return manifest


def receipt(df: pd.DataFrame, manifest: dict[str, Any]) -> dict[str, Any]:
    """What a delivery holds, without what is bound to the run (MLflow run id, model versions, creation time):
    the same book and models give the same receipt in every clone, so DVC can track it as the export stage's
    output (the score files themselves differ per clone) and a fresh clone's `dvc repro` runs the export."""
    bound = [c for c in df.columns if c == "mlflow_run_id" or c.startswith("model_version_")]
    tiers = df["priority_tier"].value_counts().sort_index() if "priority_tier" in df else pd.Series(dtype=int)
    return {"as_of": manifest["as_of"], "rows": int(len(df)), "profile": manifest["profile"],
            "columns": list(df.columns), "tiers": {str(k): int(v) for k, v in tiers.items()},
            "suppressed": int(df["suppressed"].sum()) if "suppressed" in df else None,
            "content_sha256": content_sha256(df.drop(columns=bound)), "run_bound_columns": bound}


class _Digest:
    """A write-only file that hashes what is written to it."""

    closed = False

    def __init__(self) -> None:
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def content_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of ``df``'s columns as one Arrow IPC stream (contiguous columns, no pandas metadata): the same values
    and types give the same bytes. Hashing the rows through pandas took 11 of the 5M export's 90 s (py-spy); this
    reads each column's buffers once."""
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None).combine_chunks()
    digest = _Digest()
    with pa.ipc.new_stream(pa.PythonFile(digest, mode="w"), table.schema) as writer:
        writer.write_table(table)
    return digest.sha.hexdigest()


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
        if not f.is_file() or tracking.fingerprint(f) != manifest["files"][k]["sha256"]:
            raise InputError(f"{f} does not match its manifest {target['manifest'].name} (missing or changed "
                             "after export): re-run the export")
    df = pd.read_parquet(folder / manifest["files"]["parquet"]["name"])
    if len(df) != manifest["rows"]:
        raise InputError(f"{target['parquet']} has {len(df)} rows, the manifest says {manifest['rows']}")
    return df, manifest
