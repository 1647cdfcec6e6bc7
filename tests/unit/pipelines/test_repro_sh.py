"""``pipelines/repro.sh``, what ``make run`` runs: the truth stage in a second ``dvc repro`` beside the others."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _fake_dvc(tmp_path: Path, fail: str = "") -> Path:
    """A ``dvc`` that records each call (its nice value and arguments) and fails the call whose last argument is
    ``fail``; the truth's call sleeps, so the main chain's call starts before it ends."""
    fake = tmp_path / "dvc"
    fake.write_text(
        "#!/bin/sh\n"
        'last=""; for a in "$@"; do last="$a"; done\n'
        'echo "$(nice) $*" >> "$CALLS"\n'
        'if [ "$last" = truth ]; then sleep 1; echo "Running stage \'truth\'"; fi\n'
        f'if [ "$last" = "{fail}" ]; then echo "stage $last failed" >&2; exit 3; fi\n', encoding="utf-8")
    fake.chmod(0o755)
    return fake


def _run(tmp_path: Path, fail: str = "", *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls.log"
    env = {**os.environ, "DVC": str(_fake_dvc(tmp_path, fail)), "CALLS": str(calls)}
    done = subprocess.run(["sh", "pipelines/repro.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, calls.read_text(encoding="utf-8").splitlines()


def test_the_truth_runs_niced_beside_the_main_chain_then_one_repro_finishes(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "", "--force")
    assert done.returncode == 0, done.stderr
    base = int(subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout)
    by_target = {c.split()[-1]: c for c in calls}
    assert by_target["truth"].split()[:4] == [str(min(base + 19, 19)), "--wait-for-lock", "repro", "--force"]
    assert by_target["export"].split()[:4] == [str(base), "--wait-for-lock", "repro", "--force"]
    assert calls[-1].split() == [str(base), "--wait-for-lock", "repro", "--force"]  # everything left, last
    assert calls.index(by_target["export"]) < calls.index(by_target["truth"])  # the truth's call ended later
    # the side repro's output is shown as one block after both, not interleaved with the main chain's
    assert "the truth stage, run beside the others (exit 0)" in done.stdout
    assert "Running stage 'truth'" in done.stdout.split("run beside the others (exit 0)")[1]


@pytest.mark.parametrize("fail, code", [("export", 3), ("truth", 0)])
def test_a_failure_is_the_exit_code_and_the_truth_is_waited_for(tmp_path: Path, fail: str, code: int) -> None:
    """The main chain's failure ends the run with its code (the truth still waited for, its log shown); the
    truth's own failure leaves the last, plain ``dvc repro`` to run it again in the foreground and report it."""
    done, calls = _run(tmp_path, fail)
    assert done.returncode == code, done.stderr
    assert f"(exit {3 if fail == 'truth' else 0})" in done.stdout
    assert len(calls) == (2 if fail == "export" else 3)
    assert ("stage export failed" in done.stderr) == (fail == "export")
