"""A supervised child never outlives its parent, even one killed with SIGKILL, and the watchdog puts files back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

PARENT = """
import sys, time
from pathlib import Path
from pipelines import supervise
target, backup = Path(sys.argv[1]), Path(sys.argv[2])
with open(sys.argv[3], "w") as log, supervise.supervised(["sleep", "120"], log, restore={target: backup}) as proc:
    print(proc.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split()[2] != "Z"


def test_a_sigkilled_parent_takes_its_child_with_it_and_files_are_restored(tmp_path: Path) -> None:
    target, backup = tmp_path / "params.yaml", tmp_path / ".params.yaml.before"
    target.write_text("as_of: new\n")
    backup.write_text("as_of: old\n")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(target), str(backup), str(tmp_path / "log")],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the child outlived its killed parent"
    deadline = time.time() + 10
    while target.read_text() != "as_of: old\n" and time.time() < deadline:
        time.sleep(0.2)
    assert target.read_text() == "as_of: old\n" and not backup.exists()


def test_a_normal_exit_ends_the_child_and_restores_nothing(tmp_path: Path) -> None:
    from pipelines import supervise

    target, backup = tmp_path / "t", tmp_path / "b"
    target.write_text("new")
    backup.write_text("old")
    with (tmp_path / "log").open("w") as log, supervise.supervised(["sleep", "60"], log,
                                                                    restore={target: backup}) as proc:
        pid = proc.pid
        assert _alive(pid)
    assert not _alive(pid) and target.read_text() == "new" and backup.exists()
