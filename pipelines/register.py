"""Register the calibrated models in the MLflow model registry (DVC stage ``register``).

One registered model per target (``<prefix>-purchase``, ``<prefix>-lapse``, ``<prefix>-value``), a new
version per run. Each version is an MLflow pyfunc defined by ``pipelines/serving.py`` (models from
code) around the native files: the LightGBM text model, its ``meta.json`` (features and training
categories) and, for purchase and lapse, the JSON calibrator; so ``mlflow.pyfunc.load_model`` returns
calibrated probabilities. Each is logged with a signature and an input example (rows of the scoring
snapshot's features; no personal field exists there) to the run the train stage opened, and version
tags record the as-of date, the calibration method and the out-of-time test metrics.
Writes ``data/registry/models.json`` (DVC): model names and the SHA-256 of the files registered; and
``data/tracking/registry.json`` (tracking state, not DVC-tracked): version, URI and run id per target.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from models import gbm
from pipelines import paths, scoring, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, require
from pipelines.io import staged_outputs
from pipelines.params import Params, load_params

log = logging.getLogger("pipelines.register")
FEATURES, MODELS, CALIBRATORS = paths.FEATURES, paths.MODELS, paths.CALIBRATORS
TRAIN_REPORT, CAL_REPORT = paths.report("train"), paths.report("calibration")
REGISTRY, REGISTERED = paths.REGISTRY, paths.REGISTERED
SERVING = Path(__file__).with_name("serving.py")
MODELS_PACKAGE = Path(__file__).resolve().parents[1] / "models"  # shipped with each model (any working directory)
# what the pyfunc imports when loaded elsewhere (pinned to the versions that trained it)
DESCRIPTIONS = {
    "purchase": "Calibrated probability that the customer buys a new policy within {h} days, from the feature "
                "table's columns (pipelines/serving.py). Contact-priority pipeline; docs/segments.md.",
    "lapse": "Calibrated probability that a policy holder lets a policy lapse or surrenders it within {h} days. "
             "Contact-priority pipeline; docs/segments.md.",
    "value": "Expected new premium (CNY) if the customer buys within {h} days. Contact-priority pipeline.",
}
REQUIREMENTS = ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "scipy", "pydantic")


def description(model: str, params: Params) -> str:
    """The registered model's description: a book's fixed wording, a tabular source's own target in words."""
    tab = params.validate_.source.tabular
    if tab is None:
        return DESCRIPTIONS[model].format(h=params.book.horizon_days)
    en, zh = tab.outcome_words(model)
    return (f"Calibrated probability of {en} ({zh}) for a row of the tabular source "
            f"{params.validate_.source.dir}/{tab.file}, from its columns (pipelines/serving.py). "
            "Contact-priority pipeline; docs/your_data.md.")


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def _inputs(model: str) -> dict[str, Path]:
    files = {"model": MODELS / model / "model.txt", "meta": MODELS / model / "meta.json"}
    if model != "value":
        files["calibrator"] = CALIBRATORS / f"{model}.json"
    return files


def signature_frame(frame: pd.DataFrame, columns: list[str], categorical: list[str]) -> pd.DataFrame:
    """The input example: the feature table's own numeric dtypes, categoricals as plain strings."""
    out = frame[columns].reset_index(drop=True).copy()
    for c in categorical:
        out[c] = out[c].astype("object").where(out[c].notna(), None)
    return out


def signature(example: pd.DataFrame, output: Any) -> Any:
    """Signature inferred from the example, every input optional: any feature may be missing at scoring
    time (LightGBM handles missing values), and a column absent from one example must not become a
    schema error for a caller."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the int-column hint: our int features are never null
        sig = infer_signature(example, output)
    inputs = Schema([ColSpec(c.type, c.name, required=False) for c in sig.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=sig.outputs)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    mlflow = tracking.ensure_store()
    from mlflow.tracking import MlflowClient

    model_names = params.capabilities.models
    needed = [FEATURES, TRAIN_REPORT, CAL_REPORT, *(p for m in model_names for p in _inputs(m).values())]
    require(needed, "run the train and calibrate stages first (dvc repro calibrate)")
    train_report = json.loads(TRAIN_REPORT.read_text(encoding="utf-8"))
    cal_report = json.loads(CAL_REPORT.read_text(encoding="utf-8"))
    as_of = pd.Timestamp(params.book.as_of)
    first_rows = scoring.first_scoring_rows(FEATURES, as_of.date(), params.capabilities,
                                            params.registry.input_example_rows)
    if first_rows.empty:
        raise InputError(f"{FEATURES} has no rows for the as-of date {as_of.date()} (book.as_of)")
    prefix = params.registry.model_name_prefix
    registry: dict[str, Any] = {"as_of": str(as_of.date()), "models": {}}
    client = MlflowClient()
    with tracking.run("register", {"features": FEATURES},
                      resume=tracking.read_run_id(paths.RUN_FILE)) as active:
        run_id = active.active_run().info.run_id
        for model in model_names:
            files = _inputs(model)
            meta = json.loads(files["meta"].read_text(encoding="utf-8"))
            columns = gbm.FeatureSpec.from_dict(meta["features"]).columns
            example = signature_frame(first_rows, columns, list(meta["features"]["categorical"]))
            expected = scoring.load_model(model, MODELS, CALIBRATORS).predict(example)
            name = f"{prefix}-{model}"
            info = mlflow.pyfunc.log_model(
                name=model, python_model=str(SERVING), artifacts={k: str(v) for k, v in files.items()},
                code_paths=[str(MODELS_PACKAGE)], signature=signature(example, expected), input_example=example,
                pip_requirements=pip_requirements(), registered_model_name=name,
                metadata={"target": meta["target"], "output": "premium_cny" if model == "value" else "probability"})
            ver = str(info.registered_model_version)
            test = (cal_report.get(model, {}).get("test") or train_report["models"][model]["lightgbm"])
            tags = {"as_of": str(as_of.date()), "test_snapshot": train_report["split"]["test"],
                    "calibration": cal_report.get(model, {}).get("method", "none"),
                    **{f"test_{k}": f"{test[k]:.6g}" for k in ("roc_auc", "ece", "brier", "gini", "mae") if k in test}}
            tags |= tracking.dvc_experiment()  # a version from `dvc exp run` says so: never delivered as is
            for k, v in tags.items():
                client.set_model_version_tag(name, ver, k, v)
            client.update_registered_model(name, description=description(model, params))
            registry["models"][model] = {"name": name, "version": int(ver), "uri": f"models:/{name}/{ver}",
                                         "model_uri": info.model_uri, "run_id": run_id, **tags}
            log.info("registered %s version %s (%s)", name, ver, ", ".join(f"{k} {v}" for k, v in tags.items()))
        registry["run_id"] = run_id
        registry["tracking_uri"] = tracking.tracking_uri()
        # the DVC output names what was registered by content (deterministic); the versions and run id are the
        # tracking store's state, kept beside it in data/tracking (not DVC-tracked)
        registered = {"as_of": registry["as_of"], "models": {
            m: {"name": registry["models"][m]["name"],
                "sha256": {k: tracking.fingerprint(p) for k, p in _inputs(m).items()}} for m in model_names}}
        with staged_outputs() as out:
            out.json(registered, REGISTERED)
            out.json(registry, REGISTRY)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("register", main, base_parser("register", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
