"""The committed dvc.lock is the one the committed code and params.yaml produce.

A stale lock makes every MLflow run of a fresh clone `-dirty` and a fresh `make run` rewrite the lock. This
asks DVC itself (`dvc status`), so it needs no data: on a fresh clone every data path reads "deleted",
which is expected and ignored; a changed code dep, params section or command is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DVC = Path(sys.executable).parent / "dvc"


def stale_entries(status: dict[str, list]) -> dict[str, list[str]]:
    """Per stage, what in ``dvc status --json`` says the lock no longer matches the code or params."""
    out: dict[str, list[str]] = {}
    for stage, changes in status.items():
        found = []
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                found.append(change)
                continue
            for path, what in change.get("changed deps", {}).items():
                if not path.startswith("data/"):
                    found.append(f"{path}: {what}")
        if found:
            out[stage] = found
    return out


def test_stale_entries_reads_dvc_status() -> None:
    status = {"train": [{"changed deps": {"models": "modified", "data/features": "deleted",
                                          "params.yaml": {"train": "modified"}}},
                        {"changed outs": {"data/models": "deleted"}}],
              "export": ["changed command"], "report": [{"changed outs": {"data/reports/report.html": "deleted"}}]}
    assert stale_entries(status) == {"train": ["models: modified", "params.yaml: {'train': 'modified'}"],
                                     "export": ["changed command"]}


def test_committed_lock_matches_code_and_params() -> None:
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    done = subprocess.run([str(DVC), "status", "--json"], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    stale = stale_entries(json.loads(done.stdout or "{}"))
    assert not stale, ("dvc.lock does not match the code or params.yaml: run `make run` and commit dvc.lock "
                       f"(stale: {stale})")
