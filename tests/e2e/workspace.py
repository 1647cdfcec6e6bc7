"""What every end-to-end test needs: a private copy of the working tree and commands run in it with the project's
interpreter first on PATH. Each test (or module fixture) makes its own copy, so no test depends on another's state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def copy_worktree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def repo_copy(tmp_path: Path) -> Path:
    """A git-initialised copy of the working tree to run `dvc repro` in without touching the checkout."""
    root = tmp_path / "repo"
    root.mkdir()
    copy_worktree(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def run_cmd(cmd: list[str], cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the copy's embedded store
    env |= {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": ""}
    env |= extra or {}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_ID, *args], cwd=root, check=True, capture_output=True)
