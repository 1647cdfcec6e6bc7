"""The tracking store: the experiment opens on runs, and its artifact location is configurable at creation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import tracking


def test_a_new_experiment_keeps_its_artifacts_where_mlflow_artifact_location_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    shared = tmp_path / "shared" / "artifacts"
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", str(shared))
    mlflow = tracking.ensure_store()
    experiment = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    assert tracking._location(experiment.artifact_location) == str(shared.resolve())
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND  # the UI opens on runs
    with mlflow.start_run():
        (tmp_path / "note.txt").write_text("x", encoding="utf-8")
        mlflow.log_artifact(str(tmp_path / "note.txt"))
    assert list(shared.rglob("note.txt")), "the artifact went somewhere else"
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", str(tmp_path / "elsewhere"))
    tracking.ensure_store()  # fixed at creation: a later change is reported, never silently half-applied
    assert "already keeps its artifacts in" in caplog.text
    monkeypatch.delenv("MLFLOW_ARTIFACT_LOCATION")
    caplog.clear()
    tracking.ensure_store()
    assert "already keeps" not in caplog.text


def test_a_store_prepared_in_the_background_fails_as_a_direct_connection_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare`` connects beside the stage's work; ``ensure_store`` hands its error to the stage (a misconfigured
    store still stops the stage before it publishes) and leaves no thread behind (a stage ends its process without
    the interpreter's teardown only when no other thread runs, pipelines.cli.exit_without_teardown)."""
    import threading

    from pipelines.errors import UserError

    monkeypatch.chdir(tmp_path)
    before = threading.active_count()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "notascheme://nowhere")
    tracking.prepare()
    with pytest.raises(UserError, match="notascheme://nowhere"):
        tracking.ensure_store()
    assert threading.active_count() == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.prepare()
    mlflow = tracking.ensure_store()
    assert mlflow.get_experiment_by_name(tracking.EXPERIMENT) is not None
    assert threading.active_count() == before


def test_a_store_prepared_for_another_uri_is_not_the_one_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting is keyed by the store's URI: a stage that changed it after ``prepare`` connects again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "notascheme://nowhere")
    tracking.prepare()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow = tracking.ensure_store()
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_run_imports_mlflow_only_after_the_background_connection_has(tmp_path: Path) -> None:
    """``prepare`` imports MLflow in a thread; the stage's own thread must not import it at the same time: MLflow's
    generated protobuf modules were then being registered from both threads and `train` failed in CI inside one
    (`assessments_pb2`: `AddSerializedFile`). A fresh interpreter records which thread imports MLflow's modules,
    and when the connection is done."""
    import os
    import subprocess
    import sys
    import textwrap

    from tests.conftest import REPO

    script = textwrap.dedent("""
        import sys, threading
        events = []

        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "mlflow" and threading.current_thread() is threading.main_thread():
                    events.append(("main", name))
                return None

        sys.meta_path.insert(0, Spy())
        from pipelines import tracking

        connect = tracking._connect

        def recorded():
            out = connect()
            events.append(("connected", ""))
            return out

        tracking._connect = recorded
        tracking.prepare()
        with tracking.run("train", {}, as_of="2026-09-30"):
            pass
        done = events.index(("connected", ""))
        early = [name for who, name in events[:done] if who == "main"]
        assert not early, early
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
