"""MLflow tracking: an embedded SQLite store in the repository unless MLFLOW_TRACKING_URI says otherwise.

Where the experiment keeps its artifacts is decided when the experiment is created: MLflow's default beside the
store (``./mlruns``, which MLflow records as an absolute path), or ``MLFLOW_ARTIFACT_LOCATION`` (any URI MLflow
accepts: a shared path, ``s3://...``). A tracking server started with ``make mlflow-server`` proxies artifacts as
``mlflow-artifacts:/``, relative to the server, so nothing recorded depends on where the repository lives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.errors import UserError

log = logging.getLogger(__name__)
DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "contact-priority"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def artifact_location() -> str | None:
    """Where a new experiment keeps its artifacts (None: MLflow's default for the store)."""
    return os.environ.get("MLFLOW_ARTIFACT_LOCATION") or None


def _location(uri: str) -> str:
    """A comparable form of an artifact location (MLflow stores local paths as absolute file: URIs)."""
    if "://" not in uri or uri.startswith("file://"):
        return str(Path(uri.removeprefix("file://")).resolve())
    return uri.rstrip("/")


def fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (the data a run was trained on)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


class _Connecting(threading.Thread):
    """``_connect`` in the background: importing MLflow and opening its store took about 3 s of each stage's
    start (1.8 s the import, 1.2 s the store) while the stage's own reads could have run beside it."""

    def __init__(self) -> None:
        super().__init__(name="mlflow-connect", daemon=True)
        self.key = _store_key()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = _connect()
        except BaseException as e:  # noqa: BLE001  (handed to the stage's thread by ensure_store)
            self.error = e


_connecting: _Connecting | None = None


def _store_key() -> tuple[str, str | None]:
    return tracking_uri(), artifact_location()


def prepare() -> None:
    """Start connecting to the tracking store beside the stage's first work; ``ensure_store`` (and ``run``) wait
    for it and raise its error. A stage calls ``ensure_store`` before it publishes anything, so a misconfigured
    store still fails before any output is written."""
    global _connecting
    if _connecting is not None:
        if _connecting.key == _store_key():
            return
        _connecting.join()
    _connecting = _Connecting()
    _connecting.start()


def ensure_store() -> Any:
    """Connect to the tracking store (creating the experiment); a bad URI is a clear UserError.

    Stages call this (or ``prepare``) before their work, so a misconfigured store fails in seconds, not after
    training has published its outputs.
    """
    global _connecting
    pending, _connecting = _connecting, None
    if pending is not None:
        pending.join()  # also one for another store: it would set MLflow's store after this call had
        if pending.key == _store_key():
            if pending.error is not None:
                raise pending.error
            return pending.result
    return _connect()


def _connect() -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    for noisy in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in stage logs
    uri = tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location())
        experiment = mlflow.set_experiment(EXPERIMENT)
        wanted = artifact_location()
        if wanted and _location(experiment.artifact_location) != _location(wanted):
            log.warning("MLFLOW_ARTIFACT_LOCATION is %s but the experiment %r already keeps its artifacts in %s "
                        "(fixed when it was created)", wanted, EXPERIMENT, experiment.artifact_location)
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # the UI opens on runs, not GenAI traces
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except (MlflowException, OSError, ValueError) as e:
        raise UserError(f"MLflow tracking store {uri!r} is not usable ({type(e).__name__}: {str(e)[:300]}); "
                        "unset MLFLOW_TRACKING_URI to use the embedded store sqlite:///mlflow.db") from None
    return mlflow


def read_run_id(path: Path) -> str | None:
    """The MLflow run the train stage opened (``data/tracking/run.json``), if it recorded one."""
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8")).get("run_id") or "") or None


def dvc_experiment() -> dict[str, str]:
    """The DVC experiment this process runs in (DVC sets these variables for `dvc exp run`), as run tags."""
    names = {"DVC_EXP_NAME": "dvc_experiment", "DVC_EXP_BASELINE_REV": "dvc_experiment_baseline"}
    return {tag: os.environ[var] for var, tag in names.items() if os.environ.get(var)}


def run_name(stage: str, as_of: str, commit: str) -> str:
    """``<stage-set> <as_of> <short commit>``: the train stage's run holds the whole pipeline's results."""
    who = "pipeline" if stage == "train" else stage
    return " ".join(p for p in (who, as_of, commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")) if p)


@contextmanager
def run(stage: str, inputs: dict[str, Path], resume: str | None = None, as_of: str = "") -> Iterator[Any]:
    """An MLflow run tagged with the git commit, the dvc.lock hash and fingerprints of the inputs.

    ``train`` opens the run; ``calibrate``, ``register`` and ``truth_check`` pass its id as ``resume`` and
    add to the same run, so one run holds everything about one trained model set (params, metrics,
    plots, models). When that run is not in the current store (a different MLFLOW_TRACKING_URI, a deleted
    store), a new run is opened and tagged with the missing id instead of failing.
    """
    mlflow = ensure_store()  # first: it waits for ``prepare``'s thread, which may be importing MLflow right now
    from mlflow.exceptions import MlflowException  # (two threads importing MLflow at once broke its protobufs)

    tags = {"git_commit": git_commit(), **dvc_experiment()}
    if Path("dvc.lock").is_file():
        tags["dvc_lock_sha256"] = fingerprint("dvc.lock")
    for name, path in inputs.items():
        tags[f"input.{name}.sha256"] = fingerprint(path)
    if resume is not None:
        try:
            mlflow.get_run(resume)
        except MlflowException:
            log.warning("MLflow run %s (from the train stage) is not in %s: logging %s to a new run",
                        resume, tracking_uri(), stage)
            tags["train_run_id"] = resume
            resume = None
    if resume is None:
        ctx = mlflow.start_run(run_name=run_name(stage, as_of, tags["git_commit"]),
                               tags={"stage": stage, **({"as_of": as_of} if as_of else {}), **tags})
    else:
        ctx = mlflow.start_run(run_id=resume)
        mlflow.set_tags({f"{stage}.{k}": v for k, v in tags.items()})
    with ctx as active:
        log.info("MLflow run %s in %s", active.info.run_id, tracking_uri())
        yield mlflow
