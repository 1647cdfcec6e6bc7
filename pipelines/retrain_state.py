"""Retraining's state outside the pipeline: the registry's champion alias, the delivery folder and the journal.

Split out of ``pipelines.retrain`` (issue 19): the cycle there decides; this module reads and moves what
the decision changes, each step durable before the next (the journal is fsynced, the delivery's manifest
is its commit marker), so a killed run can be completed by ``reconcile``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from models import promotion as pr
from pipelines import delivery, segmenting
from pipelines.params import Params

log = logging.getLogger("pipelines.retrain")
ALIAS = "champion"
MODELS = ("purchase", "lapse", "value")


def champion_versions(client: Any, prefix: str) -> dict[str, Any] | None:
    out = {}
    for m in MODELS:
        try:
            mv = client.get_model_version_by_alias(f"{prefix}-{m}", ALIAS)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing alias or model
            return None
        out[m] = {"name": f"{prefix}-{m}", "version": int(mv.version), "uri": f"models:/{prefix}-{m}/{mv.version}",
                  "run_id": mv.run_id, "as_of": (mv.tags or {}).get("as_of")}
    return out


def download_model_set(versions: dict[str, Any], dst: Path) -> tuple[Path, Path]:
    """The registered models' native files, laid out like data/models and data/calibrators."""
    import mlflow

    models, cals = dst / "models", dst / "calibrators"
    for m, v in versions.items():
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=v["uri"], dst_path=str(dst / "dl" / m)))
        art = local / "artifacts"
        (models / m).mkdir(parents=True, exist_ok=True)
        shutil.copy(art / "model.txt", models / m / "model.txt")
        shutil.copy(art / "meta.json", models / m / "meta.json")
        if (art / f"{m}.json").is_file():
            cals.mkdir(parents=True, exist_ok=True)
            shutil.copy(art / f"{m}.json", cals / f"{m}.json")
    return models, cals


def delivered(folder: Path) -> dict[str, Any] | None:
    """The most recent complete delivery's manifest (complete = its manifest exists)."""
    manifests = sorted(folder.glob("manifest_*.json")) if folder.is_dir() else []
    return json.loads(manifests[-1].read_text(encoding="utf-8")) if manifests else None


def same_delivery(folder: Path, as_of: dt.date, versions: dict[str, Any]) -> bool:
    m = delivery.score_paths(as_of, folder)["manifest"]
    if not m.is_file():
        return False
    got = json.loads(m.read_text(encoding="utf-8"))["models"]
    return all(int(got[k]["version"]) == int(versions[k]["version"]) for k in MODELS)


def set_champion(client: Any, versions: dict[str, Any]) -> None:
    for m in MODELS:
        client.set_registered_model_alias(versions[m]["name"], ALIAS, str(versions[m]["version"]))


def reconcile(client: Any, folder: Path, prefix: str, state: Path) -> dict[str, Any] | None:
    """Make the registry's champion alias match the latest delivery, and complete in the history the promotion
    or rollback a killed run left half done. Returns that completed entry, if any."""
    last = delivered(folder)
    if last is None:
        return None
    want = {m: {"name": v["name"], "version": int(v["version"])} for m, v in last["models"].items()}
    have = champion_versions(client, prefix)
    repaired = have is None or any(have[m]["version"] != want[m]["version"] for m in MODELS)
    if repaired:
        log.warning("champion alias %s disagrees with the last delivery (%s): repairing it from the delivery",
                    {m: v["version"] for m, v in (have or {}).items()}, {m: v["version"] for m, v in want.items()})
        set_champion(client, want)
    done = pr.completion(history(state), {m: v["version"] for m, v in want.items()})
    if done is not None:
        append_history(state, done | {"at": now()})
        log.warning("completed the %s a killed run left half done: champion %s", done["event"], done["versions"])
    elif repaired:  # no journal entry explains it (a run from before the journal): record it all the same
        append_history(state, {"as_of": last["as_of"], "event": "promoted", "completed_by": "repair",
                               "versions": {m: v["version"] for m, v in want.items()}, "at": now()})
    return done


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def deliver_with(params: Params, model_set: tuple[Path, Path], versions: dict[str, Any], run_id: str,
                 folder: Path) -> dict[str, Any]:
    """Segments and score files at the as-of date with the given model set, delivered to ``folder``."""
    built = segmenting.build(params, model_set)
    registry = {"models": {m: {"name": versions[m]["name"], "version": versions[m]["version"],
                               "uri": f"models:/{versions[m]['name']}/{versions[m]['version']}"} for m in MODELS},
                "run_id": run_id}
    df = delivery.scores_frame(built["seg"], params.book.as_of, registry, params, model_set[0])
    cuts = built["cuts"].model_dump() | {"mode": params.segment.cutpoints}
    return delivery.deliver(df, params.book.as_of, registry, cuts, folder, params.export.delimiter)


def append_history(state: Path, entry: dict[str, Any]) -> None:
    """Append one journal line, flushed to disk before returning (the next step may be a kill)."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def history(state: Path) -> list[dict[str, Any]]:
    f = state / "history.jsonl"
    return [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()] if f.is_file() else []
