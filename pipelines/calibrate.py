"""Calibrate the propensity and churn scores into true probabilities (DVC stage ``calibrate``).

Fits isotonic and sigmoid calibration (and keeps the raw probabilities as a third candidate) on the
calibration snapshot (which training and early stopping
never saw), keeps the one with the lower cross-validated Brier score, and evaluates raw vs calibrated
probabilities on the out-of-time test snapshot. Writes ``data/calibrators/<model>.json``,
``data/reports/calibration.json`` (headline in ``data/metrics/``) and the DVC plots in ``data/plots/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.intake.capabilities import ALL_MODELS, LABELS
from models import calibration, slices
from models.metrics import classification_metrics
from pipelines import headline, paths, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.errors import UserError, require
from pipelines.io import staged_outputs
from pipelines.params import load_params

log = logging.getLogger("pipelines.calibrate")
SCORES, IMPORTANCE, RUN_FILE, FEATURES = paths.MODEL_SCORES, paths.IMPORTANCE, paths.RUN_FILE, paths.FEATURES
CALIBRATORS, REPORT, PLOTS = paths.CALIBRATORS, paths.report("calibration"), paths.PLOTS
CALIBRATED = LABELS  # the models whose scores are probabilities, and their label columns


def slice_labels(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The slice of each scored row (gender, age band, ...), from the feature table's columns it has."""
    have = set(pq.read_schema(FEATURES).names)
    cols = [c for c in slices.COLUMNS if c in have]
    if not cols:
        return {}
    keys = ["customer_id", "snapshot_date"]
    feats = pd.read_parquet(FEATURES, columns=[*keys, *cols],
                            filters=[("snapshot_date", "in", list(rows["snapshot_date"].unique()))])
    return slices.slice_labels(rows[keys].merge(feats, on=keys, how="left", validate="one_to_one"))


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    tracking.prepare()  # connects beside the work below; a misconfigured store fails before anything is published
    require((SCORES, IMPORTANCE), "run the train stage first (dvc repro train)")
    scores = pd.read_parquet(SCORES)
    importance = json.loads(IMPORTANCE.read_text(encoding="utf-8"))
    report: dict[str, Any] = {}
    calibrators: dict[str, dict[str, Any]] = {}
    curves: dict[str, pd.DataFrame] = {}
    caps = params.capabilities
    for model, label in ((m, lbl) for m, lbl in CALIBRATED.items() if m in caps.models):
        rows = scores[scores[label].notna()]
        crossfit = "fold" in rows.columns  # a cross-fitted small file: every row's score is out of fold
        cal_rows, test_rows = ((rows, rows) if crossfit
                               else (rows[rows["role"] == "calib"], rows[rows["role"] == "test"]))
        if cal_rows[label].nunique() < 2:
            raise UserError(f"{model}: the calibration snapshot has no positive or no negative '{label}'")
        cp = params.calibrate
        cal, cv_brier = calibration.choose(cal_rows[f"score_{model}"].to_numpy(), cal_rows[label].to_numpy(int),
                                           folds=cp.folds, seed=cp.seed, min_relative_gain=cp.min_relative_gain)
        calibrators[model] = cal | {"fitted_on_snapshot": (f"out-of-fold scores of {len(rows):,} rows" if crossfit
                                                           else str(cal_rows["snapshot_date"].iloc[0])),
                                    "cv_brier": cv_brier}
        y = test_rows[label].to_numpy(int)
        raw = test_rows[f"score_{model}"].to_numpy()
        p = (calibration.cross_calibrated(cal["method"], raw, y, test_rows["fold"].to_numpy(int)) if crossfit
             else calibration.apply(cal, raw))
        report[model] = {"method": cal["method"], "cv_brier": cv_brier,
                         "test_raw": classification_metrics(y, raw), "test": classification_metrics(y, p),
                         "slices": slices.slice_metrics(y, p, slice_labels(test_rows), cp.slice_min_positives)}
        curves[f"calibration_{model}"] = pd.DataFrame(calibration.reliability(y, p))
        curves[f"gains_{model}"] = pd.DataFrame(calibration.gains(y, p))
        t = report[model]["test"]
        log.info("%s: %s calibration (cv Brier %s); test ECE %.4f -> %.4f, Brier %.5f", model, cal["method"],
                 ", ".join(f"{k} {v:.5f}" for k, v in cv_brier.items()), report[model]["test_raw"]["ece"],
                 t["ece"], t["brier"])
    for model, top in importance.items():
        top20 = dict(list(top.items())[:20])  # the plot shows the top 20; importance.json keeps every feature
        curves[f"importance_{model}"] = pd.DataFrame(
            {"feature": list(top20), "mean_abs_contribution": list(top20.values())})
    for model in (m for m in ALL_MODELS if m not in caps.models):  # declared DVC plots must exist: header only
        log.info("%s model: not trained for this source (%s); its plots are empty", model, caps.describe())
        if model in CALIBRATED:
            curves[f"calibration_{model}"] = pd.DataFrame(columns=["bin", "predicted", "observed", "n"])
            curves[f"gains_{model}"] = pd.DataFrame(columns=["contacted", "captured"])
        curves[f"importance_{model}"] = pd.DataFrame(columns=["feature", "mean_abs_contribution"])
    tracking.ensure_store()
    with staged_outputs() as out:
        for model, cal in calibrators.items():
            out.json(cal, CALIBRATORS / f"{model}.json")
        for name, frame in curves.items():
            frame.to_csv(out.path(PLOTS / f"{name}.csv"), index=False)
        headline.write(out, "calibration", report)
    with tracking.run("calibrate", {"scores": SCORES}, resume=tracking.read_run_id(RUN_FILE)) as mlflow:
        metrics: dict[str, float] = {}  # logged in one batch: a call per metric is a store transaction each
        for model, entry in report.items():
            # a tag, not a param: calibrate may re-run on the same train run and choose differently
            mlflow.set_tag(f"{model}.calibration", entry["method"])
            metrics |= {f"{model}.calibrated.{k}": v for k, v in entry["test"].items() if np.isfinite(v)}
            for s in (s for s in entry["slices"] if s["judged"]):
                name = re.sub(r"[^\w.\- /]", "_", f"{model}.slice.{s['slice']}.{s['value']}")
                metrics |= {f"{name}.auc": s["roc_auc"], f"{name}.ece": s["ece"]}
            mlflow.log_artifact(str(CALIBRATORS / f"{model}.json"), artifact_path=f"models/{model}")
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(REPORT), artifact_path="reports")
        for f in sorted(PLOTS.glob("*.csv")):
            mlflow.log_artifact(str(f), artifact_path="plots")


def cli(argv: list[str] | None = None) -> int:
    return run_stage("calibrate", main, base_parser("calibrate", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
