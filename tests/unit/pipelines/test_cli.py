"""``pipelines.cli.run_stage``: what every stage's command does around its work."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.cli import EXIT_USER_ERROR, base_parser, run_stage
from pipelines.errors import UserError

REPO = Path(__file__).resolve().parents[3]


def _work(args: argparse.Namespace) -> None:
    pass


def _command(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run a stage-like script as a command (``run_stage`` without ``argv``) in a fresh interpreter; the script
    finds ``tmp_path`` in ``DEMO_DIR``."""
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "DEMO_DIR": str(tmp_path)}, check=False)


def test_a_stage_called_from_python_returns_and_the_process_goes_on() -> None:
    """Tests and notebooks call ``cli([...])``: the process must go on (were it ended, this test would not pass)."""
    assert run_stage("demo", _work, base_parser("demo", None), []) == 0


def test_a_user_error_is_one_message_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: argparse.Namespace) -> None:
        raise UserError("the book has no customers")

    assert run_stage("demo", fail, base_parser("demo", None), []) == EXIT_USER_ERROR
    assert "demo failed: the book has no customers" in capsys.readouterr().err


def test_a_command_ends_without_teardown_but_runs_its_exit_handlers(tmp_path: Path) -> None:
    """The interpreter's teardown is skipped (about 1 s a stage), not the exit handlers or the streams' flushes:
    an atexit handler's file, buffered stdout and the log's last line all arrive."""
    done = _command(tmp_path, """
        import atexit, os, sys
        from pathlib import Path
        from pipelines.cli import base_parser, run_stage
        atexit.register(lambda: Path(os.environ["DEMO_DIR"], "handler_ran").write_text("yes"))
        class Teardown:  # freed when the interpreter tears its modules down, which a finished command skips
            def __del__(self, marker=str(Path(os.environ["DEMO_DIR"], "torn_down")), fd_open=os.open,
                        flags=os.O_CREAT | os.O_WRONLY):  # bound now: module globals may be gone by then
                fd_open(marker, flags)
        kept = Teardown()
        def work(args):
            print("buffered on stdout", end="")
        sys.exit(run_stage("demo", work, base_parser("demo", None)))
    """)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "handler_ran").read_text() == "yes"
    assert not (tmp_path / "torn_down").exists()
    assert done.stdout == "buffered on stdout"
    assert "demo done" in done.stderr


def test_a_stage_that_loaded_duckdb_exits_without_a_leak_report(tmp_path: Path) -> None:
    """DuckDB's bindings report every object of theirs not freed at exit (as they did with a frozen heap)."""
    done = _command(tmp_path, """
        import sys, duckdb
        from pipelines.cli import base_parser, run_stage
        def work(args):
            duckdb.connect().execute("SELECT 42").fetchall()
        sys.exit(run_stage("demo", work, base_parser("demo", None)))
    """)
    assert done.returncode == 0, done.stderr
    assert "demo done" in done.stderr and "leak" not in done.stderr


def test_a_command_with_a_thread_still_running_exits_normally(tmp_path: Path) -> None:
    """A non-daemon thread is joined at a normal exit: the command must not end under it."""
    done = _command(tmp_path, """
        import os, sys, threading, time
        from pathlib import Path
        from pipelines.cli import base_parser, run_stage
        def late():
            time.sleep(0.5)
            Path(os.environ["DEMO_DIR"], "thread_done").write_text("yes")
        def work(args):
            threading.Thread(target=late).start()
        sys.exit(run_stage("demo", work, base_parser("demo", None)))
    """)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread_done").read_text() == "yes"


def test_a_failed_command_exits_with_code_2(tmp_path: Path) -> None:
    done = _command(tmp_path, """
        import sys
        from pipelines.cli import base_parser, run_stage
        from pipelines.errors import UserError
        def work(args):
            raise UserError("no customers")
        sys.exit(run_stage("demo", work, base_parser("demo", None)))
    """)
    assert done.returncode == EXIT_USER_ERROR
    assert "demo failed: no customers" in done.stderr


def _demo_stage_output(tmp_path: Path, work: str, variable: str, given: str | None) -> str:
    """What a stage whose work is ``work`` (the body of ``work(args)``) prints, run as a command with the
    environment variable ``variable`` unset (``given`` None) or set to ``given``."""
    script = tmp_path / "stage.py"
    body = textwrap.indent(textwrap.dedent(work).strip(), " " * 4)
    script.write_text("import sys\nfrom pipelines.cli import base_parser, run_stage\n"
                      f"def work(args):\n{body}\n"
                      'sys.exit(run_stage("demo", work, base_parser("demo", None)))\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != variable}
    if given is not None:
        env[variable] = given
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**env, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("given, expected", [(None, "jemalloc"), ("system", "system"), ("", "jemalloc")])
def test_a_stage_allocates_arrow_memory_from_jemalloc_unless_told_otherwise(tmp_path: Path, given: str | None,
                                                                           expected: str) -> None:
    """pyarrow's default (mimalloc) re-faulted its memory on every large read; a caller's
    ``ARROW_DEFAULT_MEMORY_POOL`` still wins. The pinned pyarrow wheel has jemalloc: this fails, not skips,
    where it would not."""
    work = """
        import pyarrow as pa
        pa.array(range(1000))  # an allocation from the pool in use
        print(pa.default_memory_pool().backend_name, end="")
    """
    assert _demo_stage_output(tmp_path, work, "ARROW_DEFAULT_MEMORY_POOL", given) == expected


@pytest.mark.parametrize("given, expected", [(None, "False"), ("1", "True"), ("0", "False")])
def test_a_stage_keeps_numpy_off_huge_pages_unless_told_otherwise(tmp_path: Path, given: str | None,
                                                                 expected: str) -> None:
    """NumPy's huge-page requests made `train` compact memory on its faults (56 s against 46 s); a caller's
    ``NUMPY_MADVISE_HUGEPAGE`` still wins, and the stage's work sees the setting in force."""
    work = """
        import numpy as np
        switch = np._core.multiarray._set_madvise_hugepage
        on = switch(True)
        switch(on)
        print(bool(on), end="")
    """
    assert _demo_stage_output(tmp_path, work, "NUMPY_MADVISE_HUGEPAGE", given) == expected


@pytest.mark.parametrize("given, expected", [(None, "[1] [1]"), ("2", "[2] [2]")])
def test_a_stage_runs_openblas_on_one_thread_unless_told_otherwise(tmp_path: Path, given: str | None,
                                                                   expected: str) -> None:
    """A second OpenBLAS thread only spun beside the baselines' products, on the core the truth runs on. Both
    the library loaded before the stage starts (NumPy's) and one loaded during its work (SciPy's, with
    scikit-learn) run on the threads asked for; a caller's ``OPENBLAS_NUM_THREADS`` still wins."""
    work = """
        from threadpoolctl import threadpool_info
        def openblas():
            return [p for p in threadpool_info() if p["internal_api"] == "openblas"]
        def counts():
            return sorted({p["num_threads"] for p in openblas()})
        assert len(openblas()) == 1, openblas()  # NumPy's only: SciPy's is not loaded before the work
        before = counts()
        import scipy.linalg  # noqa: F401  (SciPy's own OpenBLAS, loaded now)
        assert len(openblas()) == 2, openblas()  # ... and now it is, under the variable the stage set
        print(before, counts(), end="")
    """
    assert _demo_stage_output(tmp_path, work, "OPENBLAS_NUM_THREADS", given) == expected
