"""``pipelines/repro.sh``, what ``make run`` runs: the truth stage in a second ``dvc repro`` beside the others."""

from __future__ import annotations

import os
import subprocess
import sys
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
        'echo "$(nice) $("$PY" -c "import os; print(os.getsid(0))") $*" >> "$CALLS"\n'
        'if [ "$last" = truth ]; then sleep 1; echo "Running stage \'truth\'"; echo "end truth" >> "$CALLS"; fi\n'
        f'if [ "$last" = "{fail}" ]; then echo "stage $last failed" >&2; exit 3; fi\n', encoding="utf-8")
    fake.chmod(0o755)
    return fake


def _run(tmp_path: Path, fail: str = "", *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls.log"
    env = {**os.environ, "DVC": str(_fake_dvc(tmp_path, fail)), "CALLS": str(calls), "PY": sys.executable}
    done = subprocess.run(["sh", "pipelines/repro.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, calls.read_text(encoding="utf-8").splitlines()


def test_the_truth_runs_niced_beside_the_main_chain_then_one_repro_finishes(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "", "--force")
    assert done.returncode == 0, done.stderr
    base = int(subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout)
    by_target = {c.split()[-1]: c.split() for c in calls if not c.startswith("end ")}
    assert by_target["truth"][:1] + by_target["truth"][2:5] == [str(min(base + 19, 19)), "--wait-for-lock", "repro",
                                                                "--force"]
    assert by_target["export"][:1] + by_target["export"][2:5] == [str(base), "--wait-for-lock", "repro", "--force"]
    assert calls[-1].split()[:1] + calls[-1].split()[2:] == [str(base), "--wait-for-lock", "repro", "--force"]
    # one session for all: Linux's autogroups share the CPU equally between sessions, whatever the nice value
    assert by_target["truth"][1] == by_target["export"][1] == str(os.getsid(0))
    assert calls.index("end truth") < len(calls) - 1  # ... after the truth's repro ended
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
    assert len([c for c in calls if not c.startswith("end ")]) == (2 if fail == "export" else 3)
    assert ("stage export failed" in done.stderr) == (fail == "export")


def test_an_interrupt_stops_the_truth_beside_with_its_children(tmp_path: Path) -> None:
    """Ctrl-C must not leave the side repro and its stage running on alone."""
    import signal
    import time

    fake = tmp_path / "dvc"
    fake.write_text('#!/bin/sh\nlast=""; for a in "$@"; do last="$a"; done\n'
                    'if [ "$last" = truth ]; then sleep 60 & echo $! > "$CHILD"; wait; fi\n'
                    'if [ "$last" = export ]; then sleep 60; fi\n', encoding="utf-8")
    fake.chmod(0o755)
    child = tmp_path / "child.pid"
    env = {**os.environ, "DVC": str(fake), "CHILD": str(child)}
    proc = subprocess.Popen(["sh", "pipelines/repro.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    for _ in range(100):
        if child.is_file() and child.read_text().strip():
            break
        time.sleep(0.1)
    truth_child = int(child.read_text())
    # Ctrl-C: SIGINT to the foreground group, which the side repro, a background job of a script, ignores
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "interrupted" in err
    for _ in range(50):
        try:
            os.kill(truth_child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(truth_child, signal.SIGKILL)
        raise AssertionError("the side repro's stage outlived the interrupt")
