"""Shared entry-point plumbing: logging, argument parsing, and turning user errors into messages."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import importlib
import logging
import os
import sys
import threading
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


def arrow_memory_pool() -> str:
    """Arrow's allocations (Parquet reads, ``to_pandas``, Arrow compute) from jemalloc, unless the caller names a
    pool in ``ARROW_DEFAULT_MEMORY_POOL``; the backend in use.

    pyarrow's wheels default to mimalloc, which here handed memory back to the kernel and faulted it in again
    (zeroed) on nearly every large read: on the default book it was 42 of the pipeline's 323 CPU-seconds in the
    kernel, against 27 with jemalloc, and `train` alone 19.5 -> 7.4 s of system time (docs/benchmarks.md). The
    values read are the same whichever allocator holds them (a fresh clone reproduces the committed dvc.lock).
    """
    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc keeps its default
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    return pa.default_memory_pool().backend_name


def numpy_hugepages() -> bool:
    """NumPy's large arrays on ordinary pages, unless the caller sets ``NUMPY_MADVISE_HUGEPAGE``; whether NumPy
    still asks the kernel for transparent huge pages.

    NumPy asks for huge pages (``madvise``) on every array of 4 MiB or more. With the kernel's usual
    ``transparent_hugepage/defrag = madvise`` each such fault may compact memory first: `train` spent 16 s of
    system time against 8-12 s without, and took 56 s against 45-48 s (default book, interleaved;
    docs/benchmarks.md). The values computed are the same on either kind of page. The variable is read once, at
    NumPy's import (before this runs), so the stage switches it off here with NumPy's own switch.
    """
    multiarray = importlib.import_module("numpy._core.multiarray")  # NumPy's own switch, which the variable sets
    setting = multiarray._set_madvise_hugepage  # noqa: SLF001
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is None:
        setting(False)
    on = bool(setting(True))  # reads the setting back (the switch returns the one before) ...
    setting(on)  # ... and restores it
    return on


def blas_threads() -> int:
    """OpenBLAS on one thread, unless the caller sets ``OPENBLAS_NUM_THREADS``; the threads it now runs on (0
    when no OpenBLAS is loaded yet).

    Its only real work in the stages is the logistic baselines' and calibrators' matrix-vector products (200,000
    rows at most), which one core does as fast. A second thread added nothing but its spin-wait after every
    call, on the core the truth and the other stages run on: `train` alone on the default book took 63-65
    against 49-57 CPU-seconds, and 39-41 against 34-39 s (docs/benchmarks.md). The libraries loaded already
    (NumPy's) are set through threadpoolctl, and the variable covers those loaded later (SciPy's). One thread
    sums in the same order every run, so the outputs stay the same from run to run and host to host.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    given = os.environ.get("OPENBLAS_NUM_THREADS")
    if given is None:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        threadpool_limits(1, user_api="blas")
    counts = {p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"}
    return max(counts, default=0)


def run_stage(stage: str, main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
              argv: Sequence[str] | None = None) -> int:
    """Run ``main`` with parsed args; user errors become one logged message and exit code 2.

    Run as a command (``argv`` None: ``python -m pipelines.<stage>``), a stage that succeeded ends its process
    here (``exit_without_teardown``); called from Python (tests, notebooks) it returns, as the process goes on.
    """
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    log = logging.getLogger(f"pipelines.{stage}")
    log.debug("Arrow memory pool: %s; NumPy huge pages: %s; OpenBLAS threads: %d", arrow_memory_pool(),
              numpy_hugepages(), blas_threads())
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
    if argv is None:
        exit_without_teardown(0)
    return 0


def exit_without_teardown(code: int) -> None:
    """End a command whose work is done and published: its exit handlers run, then the process ends without the
    interpreter's teardown, or returns when that is not safe (another thread still runs).

    The teardown (a last garbage collection over the ~300k objects the libraries' imports made, then every
    module freed) was about 1 s of each stage's exit. Nothing in it matters once every output is written,
    closed and published: Python's exit handlers still run (logging's flush, MLflow's, multiprocessing's),
    and so do the standard streams' flushes. Freezing the collector's heap instead saved the collection but
    not the teardown, and made DuckDB's bindings (nanobind) print a leak report at exit.
    """
    if threading.active_count() > 1:  # a non-daemon thread would be joined at a normal exit, and may still work
        return
    atexit._run_exitfuncs()  # noqa: SLF001  (what the interpreter itself calls first at exit)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more can be said on it
            stream.flush()
    os._exit(code)
