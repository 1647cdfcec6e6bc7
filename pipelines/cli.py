"""Shared entry-point plumbing: logging, argument parsing, and turning user errors into messages."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from features.intake.contract import ContractError
from pipelines.errors import UserError

EXIT_USER_ERROR = 2


PROGRESS = "progress"  # parent of the per-step progress loggers (snapshots, boosting rounds, scenarios)


def progress_logger(stage: str) -> logging.Logger:
    """Where a long stage reports each step; quiet under CI (``CI`` set) unless -v, loud otherwise."""
    return logging.getLogger(f"{PROGRESS}.{stage}")


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for noisy in ("matplotlib", "urllib3", "alembic", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet = bool(os.environ.get("CI")) and not verbose and not os.environ.get("CP_PROGRESS")
    logging.getLogger(PROGRESS).setLevel(logging.WARNING if quiet else logging.INFO)


def base_parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m pipelines.{stage}", description=(doc or "").strip().split("\n")[0])
    p.add_argument("--params", default=os.environ.get("CP_PARAMS", "params.yaml"), help="parameters file")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def run_stage(stage: str, main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
              argv: Sequence[str] | None = None) -> int:
    """Run ``main`` with parsed args; user errors become one logged message and exit code 2.

    Run as a command (``argv`` None: ``python -m pipelines.<stage>``), the stage freezes the garbage collector's
    heap when done: the interpreter's last collection then skips the ~300k objects the libraries' imports made,
    which was about a second of every stage's exit (MLflow's imports alone). Not in a process that loaded DuckDB:
    its bindings (nanobind) check at exit that every object of theirs was freed, and print a leak report
    otherwise, which a user would rightly take for a bug.
    """
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    log = logging.getLogger(f"pipelines.{stage}")
    t0 = time.perf_counter()
    try:
        main(args)
    except (UserError, ContractError) as e:
        log.error("%s failed: %s", stage, e)
        return EXIT_USER_ERROR
    except OSError as e:  # disk full, read-only data/, a file-size limit: one line naming the path
        if e.errno is None:
            raise
        where = " -> ".join(str(p) for p in (e.filename, e.filename2) if p) or "(no path given)"
        log.error("%s failed: %s: %s [%s]; nothing partial was published", stage, where, e.strerror,
                  errno.errorcode.get(e.errno, e.errno))
        return EXIT_USER_ERROR
    log.info("%s done in %.1fs", stage, time.perf_counter() - t0)
    if argv is None and "duckdb" not in sys.modules:
        gc.freeze()  # the process is about to exit: nothing left to collect that matters
    return 0
