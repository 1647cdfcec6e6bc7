"""Generate the synthetic insurance book (DVC stage ``generate``).

Writes the four raw tables to ``data/synthetic/book/`` (contract shape, personal fields and dirty
rows included, as a real export would be) and a summary to ``data/reports/generate.json``. The book's
ground truth is the ``truth`` stage's (``pipelines/truth.py``): nothing before ``truth_check`` waits for it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from features.simulator.book import extract_tables, simulate_history
from pipelines import paths
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.io import staged_outputs
from pipelines.params import load_params
from pipelines.stage_needs import skip_reason

log = logging.getLogger("pipelines.generate")
BOOK_DIR = paths.SYNTHETIC_BOOK


def skip(reason: str) -> None:
    """Write the stage's outputs as explicit 'skipped' placeholders (DVC needs its outputs to exist)."""
    log.info("generate skipped: %s", reason)
    with staged_outputs() as out:
        out.path(BOOK_DIR / "SKIPPED.txt").write_text(f"The synthetic book was not generated: {reason}\n",
                                                      encoding="utf-8")
        out.json({"skipped": reason}, paths.report("generate"))


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    reason = skip_reason("generate", params.capabilities)
    if reason:
        skip(f"{reason} (validate.source.dir is {params.validate_.source.dir!r}, not {BOOK_DIR})")
        return
    sp = params.synthetic()
    log.info("profile '%s': %s customers, %s days of history, as-of %s, seed %s", params.book.profile,
             f"{sp.size.n_customers:,}", sp.size.history_days, sp.as_of, sp.seed)
    tables, summary = extract_tables(simulate_history(sp, progress_logger("generate").info), sp)
    (BOOK_DIR / "SKIPPED.txt").unlink(missing_ok=True)
    with staged_outputs() as out:
        for name, df in tables.items():
            out.parquet(df, BOOK_DIR / f"{name}.parquet")
        out.json({"profile": params.book.profile, **summary}, paths.report("generate"))
    counts: dict[str, int] = summary["rows"]  # type: ignore[assignment]
    rows = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    log.info("wrote %s (%s)", BOOK_DIR, rows)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("generate", main, base_parser("generate", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
