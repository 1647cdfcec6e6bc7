"""Scheduled retraining: move the as-of date, run the pipeline, promote the challenger only through the gates.

    python -m pipelines.retrain --as-of 2026-10-31     # monthly cycle
    python -m pipelines.retrain --rollback             # re-deliver with the previous champion

A cycle: take the lock; set ``book.as_of`` in params.yaml; ``dvc repro``; score the challenger (the models
this run registered) and the champion (registry alias ``champion``) on the same most recent matured
out-of-time snapshot; check drift between the training and scoring snapshots; apply the gates in
``retrain.gates``; deliver the score files of the winner to ``retrain.delivery_dir``; then move the alias.

The delivered manifest is the commit point: nothing the CRM or the registry sees changes before it is
renamed into place, and the alias is moved right after it (and repaired from it at the start of every
run, should a run die between the two). Exit codes: 0 promoted (or already champion), 3 kept the champion,
5 kept a champion that now fails its own floors (an alarm), 1 failed (pipeline or delivery error; nothing
delivered), 4 another run holds the lock, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from features.intake.capabilities import TARGETS as TARGET
from features.intake.contract import ContractError
from models import drift as dr
from models import promotion as pr
from models import slices as sl
from models.metrics import classification_metrics, regression_metrics
from pipelines import delivery as dl
from pipelines import paths, scoring, supervise, tracking
from pipelines.cli import EXIT_USER_ERROR, setup_logging
from pipelines.errors import UserError
from pipelines.failpoints import failpoint
from pipelines.io import staged_outputs
from pipelines.params import Params, load_params
from pipelines.retrain_state import (
    MODELS,
    append_history,
    champion_versions,
    deliver_with,
    download_model_set,
    history,
    now,
    reconcile,
    same_delivery,
    set_champion,
)

log = logging.getLogger("pipelines.retrain")
EXIT_PROMOTED, EXIT_FAILED, EXIT_KEPT, EXIT_LOCKED, EXIT_DEGRADED = 0, 1, 3, 4, 5
CHALLENGER = "challenger"


class Locked(Exception):
    pass


class PipelineFailed(Exception):
    pass


# ---------------------------------------------------------------- plumbing

@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock: a second run exits at once instead of overlapping."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise Locked(f"another retraining run holds {path} ({holder}); not starting a second one") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} since {dt.datetime.now().isoformat(timespec='seconds')}\n")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def log_to_file(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return path


def set_as_of(params_path: Path, as_of: dt.date) -> bool:
    """Set ``book.as_of`` in params.yaml, atomically: a kill leaves the old file or the new one, never a partial
    one. True when it changed.

    The value's exact span comes from the YAML parser (the scalar node of ``book.as_of``), so every other byte,
    comments included, is kept, whatever the file's layout. DVC's stages read params.yaml itself, so the as-of
    must be there; ``as_of_moved`` puts the old file back if the cycle fails.
    """
    text = params_path.read_text(encoding="utf-8")
    node = _mapping_value(_mapping_value(yaml.compose(text), "book"), "as_of")
    if not isinstance(node, yaml.ScalarNode) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", node.value):
        raise UserError(f"{params_path}: could not find book.as_of (a YYYY-MM-DD date) to move it")
    if node.value == as_of.isoformat():
        return False
    new = text[:node.start_mark.index] + f'"{as_of.isoformat()}"' + text[node.end_mark.index:]
    tmp = params_path.with_name(f".{params_path.name}.tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, params_path)
    return True


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def run_pipeline(log_path: Path, restore: dict[Path, Path] | None = None) -> None:
    """``dvc repro`` as a supervised child: it never outlives this process (``pipelines/supervise.py``), and
    if this process is killed while it runs, the ``restore`` backups are put back."""
    dvc = Path(sys.executable).parent / "dvc"
    cmd = [str(dvc if dvc.exists() else "dvc"), "repro"]
    log.info("running %s (output in %s)", " ".join(cmd), log_path)
    with log_path.open("a", encoding="utf-8") as fh, supervise.supervised(
            cmd, fh, env=os.environ | {"DVC_NO_ANALYTICS": "1"}, restore=restore) as proc:
        code = proc.wait()
    if code != 0:
        raise PipelineFailed(f"dvc repro failed with exit code {code}; see {log_path}")


@contextmanager
def as_of_moved(params_path: Path, as_of: dt.date) -> Iterator[dict[Path, Path]]:
    """``book.as_of`` set to ``as_of`` for the block; put back (atomically) if the block fails or this process is
    killed (the backup is handed to the supervised pipeline's watchdog). Yields ``{params: backup}``."""
    backup = params_path.with_name(f".{params_path.name}.before-retrain")
    shutil.copy2(params_path, backup)
    if not set_as_of(params_path, as_of):
        backup.unlink()
        yield {}
        return
    log.info("book.as_of set to %s in %s", as_of, params_path)
    try:
        yield {params_path: backup}
    except BaseException:
        os.replace(backup, params_path)
        log.info("%s restored to its previous as-of date", params_path)
        raise
    backup.unlink(missing_ok=True)


# ---------------------------------------------------------------- models

def evaluate(rows: pd.DataFrame, model_set: tuple[Path, Path]) -> dict[str, dict[str, float]]:
    """AUC/ECE (purchase, lapse) and Gini/MAE (value) of a model set on one matured snapshot."""
    s = scoring.score(rows, *model_set)
    out: dict[str, dict[str, float]] = {}
    for m, col in (("purchase", "p_purchase"), ("lapse", "p_lapse")):
        mask = rows[TARGET[m]].notna().to_numpy()
        y = rows.loc[mask, TARGET[m]].to_numpy(int)
        met = classification_metrics(y, s.loc[mask, col].to_numpy())
        out[m] = {"roc_auc": met["roc_auc"], "ece": met["ece"], "brier": met["brier"], "positives": int(y.sum())}
    buyers = rows["purchase_h"].eq(1).to_numpy()
    reg = regression_metrics(rows.loc[buyers, "premium_h"].to_numpy(float),
                             s.loc[buyers, "expected_premium"].to_numpy())
    out["value"] = {"gini": reg["gini"], "mae": reg["mae"], "positives": int(buyers.sum())}
    return out


def challenger_slices(test: pd.DataFrame, scored: pd.DataFrame, min_positives: int) -> dict[str, list[dict[str, Any]]]:
    """Purchase and lapse metrics per slice (gender, age band, province, tenure, contacted) on the test snapshot."""
    labels = sl.slice_labels(test)
    out = {}
    for m, col in (("purchase", "p_purchase"), ("lapse", "p_lapse")):
        mask = test[TARGET[m]].notna().to_numpy()
        out[m] = sl.slice_metrics(test.loc[mask, TARGET[m]].to_numpy(int), scored.loc[mask, col].to_numpy(),
                                  {k: v[mask] for k, v in labels.items()}, min_positives)
    return out


# ---------------------------------------------------------------- the cycle

def _require_full_model_set(params: Params) -> None:
    if set(params.capabilities.models) != set(MODELS):
        raise UserError(f"retraining gates compare the purchase, lapse and value models; this is a "
                        f"{params.capabilities.describe()}: run it with dvc repro or pipelines.run_source instead")


def cycle(params_path: Path, as_of: dt.date, log_path: Path) -> tuple[int, dict[str, Any]]:
    params = load_params(params_path)
    _require_full_model_set(params)
    rp = params.retrain
    state, delivery = Path(rp.state_dir), Path(rp.delivery_dir)
    mlflow = tracking.ensure_store()
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    prefix = params.registry.model_name_prefix
    reconcile(client, delivery, prefix, state)
    with as_of_moved(params_path, as_of) as restore:  # put back if anything below fails or this run is killed
        params = load_params(params_path)
        run_pipeline(log_path, restore)
        registry = json.loads(paths.REGISTRY.read_text(encoding="utf-8"))
        chal_versions = {m: {"name": v["name"], "version": int(v["version"]), "run_id": registry["run_id"]}
                         for m, v in registry["models"].items()}
        for v in chal_versions.values():  # the version under review: models:/<name>@challenger
            client.set_registered_model_alias(v["name"], CHALLENGER, str(v["version"]))
        champ_versions = champion_versions(client, prefix)
        with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
            champ_set = download_model_set(champ_versions, Path(tmp)) if champ_versions else None
            report = judge(params, as_of, chal_versions, champ_versions, champ_set)
            _deliver_decision(params, report, client, registry, (chal_versions, champ_versions), champ_set)
    write_report(state, as_of, report)
    _log_to_mlflow(mlflow, registry["run_id"], report)
    code = {"promoted": EXIT_PROMOTED, "kept": EXIT_KEPT}.get(report["decision"], EXIT_FAILED)
    if report["champion_degraded"]:  # kept, but the champion itself now fails its floors: a person must look
        code = EXIT_DEGRADED
    return code, report


def judge(params: Params, as_of: dt.date, chal_versions: dict[str, Any], champ_versions: dict[str, Any] | None,
          champ_set: tuple[Path, Path] | None) -> dict[str, Any]:
    """Challenger and champion on the same matured out-of-time snapshot, drift, the gates and the decision."""
    rp = params.retrain
    train = json.loads(paths.report("train").read_text(encoding="utf-8"))
    seg_report = json.loads(paths.report("segments").read_text(encoding="utf-8"))
    wanted = [dt.date.fromisoformat(d) for d in (train["split"]["test"], train["split"]["train"][-1])]
    feats = scoring.read_snapshots(paths.FEATURES, [*wanted, as_of])
    dates = pd.to_datetime(feats["snapshot_date"]).dt.date
    test = feats[dates == dt.date.fromisoformat(train["split"]["test"])]
    scoring_rows = feats[dates == as_of]
    last_train = feats[dates == dt.date.fromisoformat(train["split"]["train"][-1])]
    chal = evaluate(test, (scoring.MODELS, scoring.CALIBRATORS))
    champ = evaluate(test, champ_set) if champ_set else None
    report: dict[str, Any] = {"as_of": str(as_of), "test_snapshot": train["split"]["test"],
                              "challenger": {"versions": {m: v["version"] for m, v in chal_versions.items()},
                                             "metrics": chal}}
    if champ_versions:
        report["champion"] = {"versions": {m: v["version"] for m, v in champ_versions.items()}, "metrics": champ}
    # drift: last training snapshot vs scoring snapshot (features), test vs scoring snapshot (scores)
    spec = json.loads((scoring.MODELS / "purchase" / "meta.json").read_text(encoding="utf-8"))["features"]
    fd = dr.feature_drift(last_train, scoring_rows, [*spec["numeric"], *spec["categorical"]],
                          spec["categorical"], rp.drift)
    scored_test, scored_live = scoring.score(test), scoring.score(scoring_rows)
    sd = dr.score_drift(scored_test, scored_live, rp.drift)
    warnings = fd[fd["warning"] != ""]
    block = [f"{k} PSI {v['psi']:.3f}" for k, v in sd.items() if v["level"] == "block"]
    report["drift"] = {"reference_snapshot": train["split"]["train"][-1],
                       "features_with_warnings": warnings[["feature", "psi", "warning"]].head(20).to_dict("records"),
                       "n_feature_warnings": int(len(warnings)), "scores": sd, "blocked": block}
    for _, w in warnings.head(10).iterrows():
        log.warning("drift: %s %s (PSI %.3f)", w["feature"], w["warning"], w["psi"])
    logistic = {m: float(train["models"][m]["logistic"]["roc_auc"]) for m in ("purchase", "lapse")
                if "logistic" in train["models"].get(m, {})}
    checks = pr.gates(rp.gates, chal, champ, bool(seg_report["backtest"]["tiers_monotone_purchase_rate"]), block,
                      logistic)
    report["challenger"]["slices"] = challenger_slices(test, scored_test, params.calibrate.slice_min_positives)
    checks += sl.slice_gates(report["challenger"]["slices"], rp.gates.slice_min_auc)
    canary_checks, report["canary"] = pr.canary(scored_live, scoring.score(scoring_rows, *champ_set) if champ_set
                                                else None, rp.gates)
    checks += canary_checks
    already = champ_versions is not None and all(
        champ_versions[m]["version"] == chal_versions[m]["version"] for m in MODELS)
    champ_as_of = (champ_versions or {}).get("purchase", {}).get("as_of")
    age = (as_of - dt.date.fromisoformat(champ_as_of)).days if champ_as_of else None
    decision, why = pr.decide(checks, champ_versions is not None, already, age, rp.gates.max_champion_age_days)
    alarm = pr.degraded(champ, rp.gates) if champ is not None and decision == "kept" else []
    for line in alarm:
        log.error("the kept champion has degraded on the new matured data: %s", line)
    return report | {"gates": checks, "decision": decision, "why": why, "already_champion": already,
                     "champion_age_days": age, "champion_degraded": alarm}


def _deliver_decision(params: Params, report: dict[str, Any], client: Any, registry: dict[str, Any],
                      versions: tuple[dict[str, Any], dict[str, Any] | None],
                      champ_set: tuple[Path, Path] | None) -> None:
    """Deliver the winner's scores, then move the alias; a promotion is journalled before and after."""
    chal_versions, champ_versions = versions
    decision, as_of = report["decision"], params.book.as_of
    state, delivery = Path(params.retrain.state_dir), Path(params.retrain.delivery_dir)
    winner = chal_versions if decision == "promoted" else champ_versions
    if winner is None or decision == "failed":
        return
    promote = decision == "promoted" and not report["already_champion"]
    entry = {"as_of": str(as_of), "versions": {m: v["version"] for m, v in chal_versions.items()},
             "from": None if champ_versions is None else {m: v["version"] for m, v in champ_versions.items()}}
    if promote:
        append_history(state, entry | {"event": "pending", "action": "promoted", "at": now()})
    if same_delivery(delivery, as_of, winner):
        log.info("scores for %s with these models are already delivered: not re-delivering", as_of)
    elif decision == "promoted":
        df, _ = dl.read_delivery(as_of, paths.SCORES)  # the pipeline's export, checked
        cuts = json.loads(paths.CUTPOINTS.read_text(encoding="utf-8"))
        dl.deliver(df, as_of, registry, cuts, delivery, params.export.delimiter)
    else:
        assert champ_set is not None and champ_versions is not None
        deliver_with(params, champ_set, champ_versions, champ_versions["purchase"]["run_id"], delivery)
    if promote:
        failpoint("promote:after_delivery")
        set_champion(client, chal_versions)
        append_history(state, entry | {"event": "promoted", "at": now()})


def write_report(state: Path, as_of: dt.date, report: dict[str, Any]) -> None:
    with staged_outputs() as out:
        out.json(report, state / "reports" / f"retrain_{as_of}.json")


def _log_to_mlflow(mlflow: Any, run_id: str, report: dict[str, Any]) -> None:
    try:
        with tracking.run("retrain", {}, resume=run_id) as ml:
            ml.set_tags({"retrain.decision": report["decision"], "retrain.why": report["why"][:500]})
            ml.log_metrics({f"drift.score.{k}.psi": v["psi"] for k, v in report["drift"]["scores"].items()}
                           | {"drift.n_feature_warnings": report["drift"]["n_feature_warnings"]})
    except Exception as e:  # noqa: BLE001 - tracking must never change a decision already delivered
        log.warning("could not log the retrain decision to MLflow: %s", e)


def rollback(params_path: Path) -> tuple[int, dict[str, Any]]:
    """Re-deliver the current as-of's scores with the champion before the current one (history order), and make
    it champion. Retried after a kill at any point, it completes the same rollback instead of starting another."""
    params = load_params(params_path)
    _require_full_model_set(params)
    rp = params.retrain
    state, delivery = Path(rp.state_dir), Path(rp.delivery_dir)
    tracking.ensure_store()
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    prefix = params.registry.model_name_prefix
    done = reconcile(client, delivery, prefix, state)
    if done is not None and done["event"] == "rollback":  # the interrupted rollback was delivered: now complete
        return EXIT_PROMOTED, _rollback_report(state, params.book.as_of, done["from"], done["versions"], True)
    current = champion_versions(client, prefix)
    if current is None:
        raise UserError("no champion to roll back from")
    cur = {m: int(current[m]["version"]) for m in MODELS}
    left = pr.pending(history(state))
    if left is not None and left["action"] == "rollback":  # killed before its delivery: resume the same one
        target = {m: int(v) for m, v in left["versions"].items()}
        cur = {m: int(v) for m, v in left["from"].items()}
        log.info("resuming the interrupted rollback from %s to %s", cur, target)
    else:
        found = pr.rollback_target(history(state), cur)
        if found is None:
            raise UserError(f"no previous champion to roll back to (history in {state / 'history.jsonl'})")
        target = found
        append_history(state, {"as_of": str(params.book.as_of), "event": "pending", "action": "rollback",
                               "versions": target, "from": cur, "at": now()})
        failpoint("rollback:after_pending")
    versions: dict[str, Any] = {m: {"name": f"{prefix}-{m}", "version": target[m]} for m in MODELS}
    run_id = str(client.get_model_version(f"{prefix}-purchase", str(target["purchase"])).run_id)
    with tempfile.TemporaryDirectory(prefix="rollback-") as tmp:
        model_set = download_model_set({m: v | {"uri": f"models:/{v['name']}/{v['version']}"}
                                        for m, v in versions.items()}, Path(tmp))
        deliver_with(params, model_set, versions, run_id, delivery)
    failpoint("rollback:after_delivery")
    set_champion(client, versions)
    append_history(state, {"as_of": str(params.book.as_of), "event": "rollback", "versions": target, "from": cur,
                           "at": now()})
    return EXIT_PROMOTED, _rollback_report(state, params.book.as_of, cur, target, False)


def _rollback_report(state: Path, as_of: dt.date, cur: dict[str, Any], target: dict[str, Any],
                     completed: bool) -> dict[str, Any]:
    why = f"rolled back from {cur} to {target}" + (" (completing the interrupted rollback)" if completed else "")
    report = {"as_of": str(as_of), "decision": "rolled_back", "why": why, "versions": target}
    write_report(state, as_of, report | {"rollback": True})
    return report


def _on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.retrain", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--as-of", help="new scoring date YYYY-MM-DD (history ends the day before)")
    what.add_argument("--rollback", action="store_true", help="re-deliver with the previous champion")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    signal.signal(signal.SIGTERM, _on_sigterm)  # clean up (end the pipeline, restore params.yaml) like Ctrl-C
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        state = Path(params.retrain.state_dir)
        log_path = log_to_file(state / "logs", "rollback" if args.rollback else f"retrain-{args.as_of}")
        with run_lock(state / "retrain.lock"):
            if args.rollback:
                code, report = rollback(Path(args.params))
            else:
                code, report = cycle(Path(args.params), dt.date.fromisoformat(args.as_of), log_path)
    except Locked as e:
        log.error("%s", e)
        return EXIT_LOCKED
    except (UserError, ContractError, ValueError) as e:
        log.error("retrain failed: %s", e)
        return EXIT_USER_ERROR
    except PipelineFailed as e:
        log.error("retrain FAILED: %s; the champion and the delivered scores are unchanged", e)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a scheduler needs one line and an exit code, the log has the rest
        log.error("retrain FAILED: %s: %s; the champion and the delivered scores are unchanged", type(e).__name__, e)
        log.debug("details", exc_info=True)
        return EXIT_FAILED
    log.info("retrain %s: %s - %s (%.0fs; log %s)", report["as_of"], report["decision"].upper(), report["why"],
             time.perf_counter() - t0, log_path)
    return code


if __name__ == "__main__":
    sys.exit(main())

