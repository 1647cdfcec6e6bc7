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
import json
import logging
import sys
from typing import Any

import pandas as pd

from pipelines import paths
from pipelines.cli import base_parser, run_stage
from pipelines.delivery import deliver, read_delivery, read_segments, receipt, scores_frame
from pipelines.errors import InputError, UserError, require
from pipelines.io import staged_outputs
from pipelines.params import load_params

log = logging.getLogger("pipelines.export")
SEGMENTS, CUTPOINTS, REGISTRY = paths.SEGMENTS, paths.CUTPOINTS, paths.REGISTRY
FEATURES, DICTIONARY, SCORES = paths.FEATURES, paths.DICTIONARY, paths.SCORES
RECEIPT = paths.report("export")  # the stage's DVC output: the delivery without its run-bound columns


def export(params_path: str) -> dict[str, Any]:
    params = load_params(params_path)
    require((SEGMENTS, CUTPOINTS, REGISTRY, FEATURES, DICTIONARY),
            "run the earlier stages first (dvc repro segment register)")
    as_of = params.book.as_of
    seg = read_segments(SEGMENTS)
    if (pd.to_datetime(seg["as_of"]).dt.date != as_of).any():
        raise InputError(f"{SEGMENTS} was built for another as-of date than book.as_of {as_of}: dvc repro segment")
    registry = json.loads(REGISTRY.read_text(encoding="utf-8"))
    cutpoints = json.loads(CUTPOINTS.read_text(encoding="utf-8"))
    df = scores_frame(seg, as_of, registry, params, caps=params.capabilities)
    tab = params.validate_.source.tabular
    outcome = None
    if tab is not None:
        words = [(t, *tab.outcome_words(t.target_kind)) for t in tab.targets()]
        described = [{"kind": t.target_kind, "column": t.target, "positive": t.positive, "en": en, "zh": zh,
                      "probability_column": f"p_{t.target_kind}"} for t, en, zh in words]
        outcome = described[0] | ({"other": described[1]} if len(described) > 1 else {})
    manifest = deliver(df, as_of, registry, cutpoints, SCORES, params.export.delimiter, outcome)
    with staged_outputs() as out:
        out.json(receipt(df, manifest), RECEIPT)
    return manifest



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

