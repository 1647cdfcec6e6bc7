"""``pipelines.cli.run_stage``: what every stage's command does around its work."""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import EXIT_USER_ERROR, base_parser, run_stage
from pipelines.errors import UserError


def _work(args: argparse.Namespace) -> None:
    pass


@pytest.fixture
def unfrozen() -> object:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process goes on: its objects must stay collectable


def test_a_stage_run_as_a_command_freezes_the_heap_for_a_quick_exit(unfrozen: object,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m pipelines.demo"])
    monkeypatch.delitem(sys.modules, "duckdb", raising=False)  # a stage without DuckDB (another test loaded it here)
    assert run_stage("demo", _work, base_parser("demo", None)) == 0
    assert gc.get_freeze_count() > 0  # the interpreter's last collection will skip these objects


def test_a_stage_called_from_python_leaves_the_collector_alone(unfrozen: object) -> None:
    """Tests and notebooks call ``cli([...])`` in a process that goes on: nothing may be frozen there."""
    assert run_stage("demo", _work, base_parser("demo", None), []) == 0
    assert gc.get_freeze_count() == 0


def test_a_user_error_is_one_message_and_exit_code_2(unfrozen: object, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: argparse.Namespace) -> None:
        raise UserError("the book has no customers")

    assert run_stage("demo", fail, base_parser("demo", None), []) == EXIT_USER_ERROR
    assert "demo failed: the book has no customers" in capsys.readouterr().err
    assert gc.get_freeze_count() == 0


def test_a_stage_that_loaded_duckdb_exits_without_a_leak_report(tmp_path: Path) -> None:
    """DuckDB's bindings report every object of theirs not freed at exit; a frozen heap frees none of them."""
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, duckdb\n"
        "from pipelines.cli import base_parser, run_stage\n"
        "def work(args):\n"
        "    duckdb.connect().execute('SELECT 42').fetchall()\n"
        "sys.exit(run_stage('demo', work, base_parser('demo', None)))\n", encoding="utf-8")
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr
    assert "demo done" in done.stderr and "leaked" not in done.stderr
