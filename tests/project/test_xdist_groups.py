"""The suite's budget rests on ``--dist loadgroup``: tests that share an expensive fixture (the tiny book's
``dvc repro``, a Spark session) must run on one worker, or each worker builds the fixture again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODULE = '''
import os, pytest

@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    print("WORKER", os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
'''


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "test_groups.py").write_text(MODULE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not this repository's settings
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-s",
                           "-p", "no:cacheprovider", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    workers = {line.split("] ")[0].strip("[") for line in done.stdout.splitlines()
               if "test_grouped" in line and "PASSED" in line}
    assert len(workers) == 1, f"the group ran on {sorted(workers)}: pytest/pytest-xdist no longer honour loadgroup"
