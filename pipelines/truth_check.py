"""Compare calibrated probabilities with the synthetic book's true probabilities (DVC stage ``truth_check``).

The only stage that reads ``data/synthetic/truth.parquet``. It scores the as-of snapshot with the
trained models and calibrators and reports, for purchase and lapse: the calibration error against the
truth, the rank correlation with it, and the AUC the model can expect vs the AUC the true
probabilities can expect (both over outcomes drawn from the truth; the latter is the ceiling).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from features.capabilities import skip_reason
from models.metrics import calibration_error_vs_truth, expected_auc
from pipelines import scoring, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError
from pipelines.io import staged_outputs
from pipelines.params import load_params

log = logging.getLogger("pipelines.truth_check")
TRUTH = Path("data/synthetic/truth.parquet")
FEATURES = Path("data/features/features.parquet")
MODELS = Path("data/models")
CALIBRATORS = Path("data/calibrators")
REPORT = Path("data/reports/truth_check.json")


def score_snapshot(df: pd.DataFrame, model: str) -> np.ndarray:
    """Calibrated probabilities for ``df`` from the saved LightGBM model and calibrator."""
    return scoring.load_model(model, MODELS, CALIBRATORS).predict(df)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    reason = skip_reason("truth_check", params.capabilities)
    if reason:
        log.info("truth_check skipped: %s", reason)
        with staged_outputs() as out:
            out.json({"skipped": reason}, REPORT)
        return
    tracking.ensure_store()  # fail fast on a misconfigured MLFLOW_TRACKING_URI, before any work
    for p in (TRUTH, FEATURES):
        if not p.is_file():
            raise InputError(f"{p} not found: this check needs the synthetic book (dvc repro generate features)")
    for model in ("purchase", "lapse"):
        for p in (MODELS / model / "model.txt", MODELS / model / "meta.json", CALIBRATORS / f"{model}.json"):
            if not p.is_file():
                raise InputError(f"{p} not found: run the train and calibrate stages first (dvc repro calibrate)")
    feats = pd.read_parquet(FEATURES)
    as_of = pd.Timestamp(params.book.as_of)
    scoring = feats[pd.to_datetime(feats["snapshot_date"]) == as_of]
    truth = pd.read_parquet(TRUTH)
    joined = scoring.merge(truth, on="customer_id", how="inner", suffixes=("", "_truth"))
    log.info("scoring snapshot %s: %s customers, %s with truth", as_of.date(), f"{len(scoring):,}", f"{len(joined):,}")
    report: dict[str, Any] = {"as_of": str(as_of.date()), "customers": len(joined)}
    for model, truth_col in (("purchase", "p_purchase"), ("lapse", "p_lapse")):
        rows = joined[joined[truth_col].notna()]
        p_model = score_snapshot(rows, model)
        p_true = rows[truth_col].to_numpy(float)
        report[model] = {
            "mean_predicted": float(p_model.mean()), "mean_true": float(p_true.mean()),
            "ece_vs_truth": calibration_error_vs_truth(p_true, p_model),
            "spearman_vs_truth": float(spearmanr(p_model, p_true).statistic),
            "expected_auc_model": expected_auc(p_true, p_model),
            "expected_auc_truth": expected_auc(p_true, p_true),
        }
        r = report[model]
        log.info("%s: mean predicted %.4f vs true %.4f; ECE vs truth %.4f; Spearman %.3f; expected AUC %.4f "
                 "(truth %.4f)", model, r["mean_predicted"], r["mean_true"], r["ece_vs_truth"],
                 r["spearman_vs_truth"], r["expected_auc_model"], r["expected_auc_truth"])
    with staged_outputs() as out:
        out.json(report, REPORT)
    with tracking.run("truth_check", {"truth": TRUTH, "features": FEATURES},
                      resume=tracking.read_run_id(MODELS / "mlflow_run.json")) as mlflow:
        for model in ("purchase", "lapse"):
            for k, v in report[model].items():
                mlflow.log_metric(f"{model}.truth.{k}", v)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("truth_check", main, base_parser("truth_check", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
