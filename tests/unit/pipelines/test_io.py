"""Atomic, all-or-nothing stage outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipelines.io import staged_outputs


def test_outputs_appear_only_on_success(tmp_path: Path) -> None:
    a, b = tmp_path / "x/a.parquet", tmp_path / "y/b.json"
    with staged_outputs() as out:
        out.parquet(pd.DataFrame({"v": [1, 2]}), a)
        out.json({"k": 1}, b)
        assert not a.exists() and not b.exists()
    assert pd.read_parquet(a)["v"].tolist() == [1, 2]
    assert b.read_text().strip().startswith("{")
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_failure_leaves_previous_outputs_untouched(tmp_path: Path) -> None:
    a = tmp_path / "a.parquet"
    pd.DataFrame({"v": [0]}).to_parquet(a)
    with pytest.raises(RuntimeError), staged_outputs() as out:
        out.parquet(pd.DataFrame({"v": [1]}), a)
        raise RuntimeError("boom")
    assert pd.read_parquet(a)["v"].tolist() == [0]
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_killed_writer_never_leaves_a_partial_or_mixed_set(tmp_path: Path) -> None:
    """SIGKILL between writing and publishing: destinations keep their old, complete content."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for p in (a, b):
        pd.DataFrame({"v": [0]}).to_parquet(p)
    script = textwrap.dedent(f"""
        import os, signal, pandas as pd
        from pipelines.io import staged_outputs
        with staged_outputs() as out:
            out.parquet(pd.DataFrame({{"v": [1]}}), {str(a)!r})
            out.parquet(pd.DataFrame({{"v": [1]}}), {str(b)!r})
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert pd.read_parquet(a)["v"].tolist() == [0]
    assert pd.read_parquet(b)["v"].tolist() == [0]


def test_unusable_tracking_store_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import tracking
    from pipelines.errors import UserError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "notascheme://nowhere")
    with pytest.raises(UserError, match="notascheme://nowhere"), tracking.run("train", {}):
        pass


@pytest.mark.parametrize("point, published", [("publish:staged", {"a.txt": "old", "m.json": "old"}),
                                              ("publish:marker_removed", {"a.txt": "old"}),
                                              ("publish:first_renamed", {"a.txt": "new"})])
def test_a_kill_at_each_publish_point_leaves_old_files_or_no_marker(tmp_path, point, published) -> None:
    """Issue 19: deterministic fault injection. The child dies exactly at the named point (its log says so), and
    what is on disk is the old set with its marker, or no marker at all."""
    for name in ("a.txt", "m.json"):
        (tmp_path / name).write_text("old", encoding="utf-8")
    code = ("import sys; from pathlib import Path; from pipelines.io import staged_outputs\n"
            "d = Path(sys.argv[1])\n"
            "with staged_outputs(marker=d / 'm.json') as out:\n"
            "    out.path(d / 'a.txt').write_text('new')\n"
            "    out.path(d / 'm.json').write_text('new')\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PIPELINES_FAILPOINT": point})
    assert done.returncode == 137 and f"failpoint {point}" in done.stderr
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir() if not p.name.startswith(".")} \
        == published
