"""Explain one customer, from raw rows to the plan: ``python -m pipelines.explain <customer_id>``.

Not a DVC stage: it only reads the outputs of the last run. It prints, for one customer at ``book.as_of``:
the validated source rows (personal fields were dropped at validation, so none can appear), the features
that moved each model most (LightGBM contributions, in log-odds), the calibrated scores, the segments and
tier, and the plan's decision with its reason; ``--json`` writes the same as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd

from models import gbm, reasons
from pipelines import paths, scoring
from pipelines.cli import setup_logging
from pipelines.errors import InputError, UserError, require
from pipelines.params import load_params

log = logging.getLogger("pipelines.explain")
TABLES = ("customers", "policies", "claims", "contacts")
SEGMENT_FIELDS = ("p_purchase", "p_lapse", "expected_premium", "rule_quadrant", "ml_quadrant", "value_tier",
                  "closeness", "behaviour", "priority_tier", "contact_value", "channel", "next_contact_date",
                  "touches_planned", "suppressed", "suppress_reason", "plan_reason")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if not np.isfinite(v) else round(float(v), 6)
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v if isinstance(v, int | str | bool) else str(v)


def _records(df: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    rows = df.tail(limit) if limit else df
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows.to_dict("records")]


def source_rows(customer_id: str, last_contacts: int) -> dict[str, Any]:
    """The customer's validated rows per table (contacts: the count and the most recent ones)."""
    out: dict[str, Any] = {}
    for t in TABLES:
        path = paths.INTERIM / f"{t}.parquet"
        if not path.is_file():
            continue
        df = pd.read_parquet(path)
        df = df[df["customer_id"].astype(str) == customer_id].drop(
            columns=[c for c in ("customer_key", "referred_by_key") if c in df.columns])
        if t == "contacts":
            df = df.sort_values("contact_ts")
            out[t] = {"count": len(df), "most_recent": _records(df, last_contacts)}
        else:
            out[t] = _records(df)
    return out


def drivers(row: pd.DataFrame, model_name: str, top: int) -> list[dict[str, Any]]:
    """The features that moved one model's score most for this row (LightGBM contributions, log-odds)."""
    model = scoring.load_model(model_name)
    contrib = reasons.contributions(model.booster, gbm.design(row, model.spec), model.meta.get("linear_centre")).iloc[0]
    order = contrib.abs().sort_values(ascending=False).index[:top]
    return [{"feature": f, "value": _jsonable(row[f].iloc[0]), "contribution": round(float(contrib[f]), 4)}
            for f in order]


def explain(customer_id: str, top: int = 8, last_contacts: int = 5) -> dict[str, Any]:
    params = load_params()
    as_of = params.book.as_of
    require((paths.FEATURES, paths.SEGMENTS), "run the pipeline first (make run)")
    if params.capabilities.snapshots:  # the one customer's row, typed as the whole snapshot (5M x 136 at 5M)
        row = scoring.read_customers(paths.FEATURES, as_of, [customer_id])
    else:
        rows = scoring.read_scoring_rows(paths.FEATURES, as_of, params.capabilities)
        row = rows[rows["customer_id"].astype(str) == customer_id]
    if row.empty:
        ids = (pd.read_parquet(paths.FEATURES, columns=["customer_id"], filters=[("snapshot_date", "in", [as_of])])
               if params.capabilities.snapshots else rows)["customer_id"]
        like = ", ".join(map(str, ids.head(3)))
        raise UserError(f"customer {customer_id!r} is not in the scoring snapshot of {as_of} ({paths.FEATURES}): "
                        f"check the id (customer ids look like {like})")
    seg = pd.read_parquet(paths.SEGMENTS, filters=[("customer_id", "==", customer_id)])
    out: dict[str, Any] = {"customer_id": customer_id, "as_of": str(as_of),
                           "source_rows": source_rows(customer_id, last_contacts) if params.capabilities.snapshots
                           else {}}
    out["drivers"] = {m: drivers(row, m, top) for m in params.capabilities.models}
    out["scores_and_plan"] = {k: _jsonable(seg[k].iloc[0]) for k in SEGMENT_FIELDS if k in seg and len(seg)}
    return out


def _print(doc: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"customer {doc['customer_id']} at {doc['as_of']}\n")
    for t, rows in doc["source_rows"].items():
        if t == "contacts":
            w(f"\n{t}: {rows['count']} touches; most recent:\n")
            rows = rows["most_recent"]
        else:
            w(f"\n{t}: {len(rows)} row(s)\n")
        for r in rows:
            w("  " + ", ".join(f"{k}={v}" for k, v in r.items() if v is not None) + "\n")
    for m, ds in doc["drivers"].items():
        w(f"\n{m} model, strongest drivers (log-odds contribution):\n")
        for d in ds:
            w(f"  {d['contribution']:+.4f}  {d['feature']} = {d['value']}\n")
    w("\nscores, segments and plan:\n")
    for k, v in doc["scores_and_plan"].items():
        w(f"  {k}: {v}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.explain", description=__doc__.split("\n")[0])
    parser.add_argument("customer_id")
    parser.add_argument("--top", type=int, default=8, help="drivers per model")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        doc = explain(args.customer_id, args.top)
    except (UserError, InputError) as e:
        log.error("explain failed: %s", e)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    else:
        _print(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
