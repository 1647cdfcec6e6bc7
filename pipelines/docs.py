"""Regenerate reference pages that are derived from code (``docs/data_contract.md``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from features.contract import render_markdown
from pipelines.cli import base_parser, run_stage

log = logging.getLogger("pipelines.docs")
CONTRACT_DOC = Path("docs/data_contract.md")


def main(args: argparse.Namespace) -> None:
    CONTRACT_DOC.write_text(render_markdown(), encoding="utf-8")
    log.info("wrote %s", CONTRACT_DOC)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("docs", main, base_parser("docs", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
