"""Train the propensity, churn and value models out-of-time, beside their baselines (DVC stage ``train``).

Reads ``data/features/``; writes native LightGBM text models and JSON metadata to
``data/models/<model>/``, raw scores of the calibration and test snapshots to
``data/models/scores.parquet`` (for calibration), and ``data/reports/train.json``; logs the run to MLflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd

from features.intake.capabilities import TARGETS
from models import baselines, gbm, training, tuning
from models.splits import SplitError, time_split
from models.training import TrainParams
from pipelines import headline, paths, scoring, tracking
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.errors import UserError, require
from pipelines.io import staged_outputs
from pipelines.params import load_params

log = logging.getLogger("pipelines.train")
progress = progress_logger("train")
FEATURES, DICTIONARY, MODELS, REPORT = paths.FEATURES, paths.DICTIONARY, paths.MODELS, paths.report("train")
RUN_FILE = paths.RUN_FILE  # the run calibrate, register and truth_check add to (tracking state, not DVC-tracked)
IMPORTANCE = paths.IMPORTANCE  # not a DVC metric: nested maps make `dvc metrics show` unreadable


def _progress(name: str) -> Any:
    def cb(env: Any) -> None:
        if (env.iteration + 1) % 100 == 0:
            res = env.evaluation_result_list[0] if env.evaluation_result_list else None
            progress.info("%s: round %d%s", name, env.iteration + 1, f", valid {res[1]} {res[2]:.5f}" if res else "")
    return cb


def _tuner(tp: TrainParams, mlflow: Any) -> training.Tuner:
    """Optuna search on the validation snapshot, each trial a nested MLflow run."""
    def tune(model: str, X: dict[str, pd.DataFrame], y: dict[str, np.ndarray],
             objective: training.Objective) -> tuple[gbm.GBMParams, list[dict[str, Any]]]:
        return _tune(model, X, y, tp, objective, mlflow)
    return tune


def _tune(model: str, X: dict[str, pd.DataFrame], y: dict[str, np.ndarray], tp: TrainParams,
          objective: training.Objective, mlflow: Any) -> tuple[gbm.GBMParams, list[dict[str, Any]]]:
    def on_trial(number: int, params: dict[str, Any], value: float, best_iteration: int) -> None:
        with mlflow.start_run(run_name=f"tune-{model}-{number}", nested=True, tags={"stage": "tuning",
                                                                                   "model": model}):
            mlflow.log_params(params)
            mlflow.log_metrics({"valid_loss": value, "best_iteration": best_iteration})
        progress.info("%s tuning trial %d: valid loss %.5f at %d rounds %s", model, number, value, best_iteration,
                 params)

    best, history = tuning.search(X["train"], y["train"], X["valid"], y["valid"], tp.gbm, objective, tp.tuning,
                                  on_trial=on_trial)
    log.info("%s: tuned over %d trials; best %s", model, len(history),
             {k: getattr(best, k) for k in ("num_leaves", "min_child_samples", "feature_fraction", "lambda_l2")})
    return best, history


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    tracking.prepare()  # connects beside the reads below; tracking.run waits for it, before any work is published
    tp = params.train
    require((FEATURES, DICTIONARY), "run the features stage first (dvc repro features)")
    df = scoring.read_labelled(FEATURES, params.capabilities)
    dictionary = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"]).dt.date
    caps = params.capabilities
    targets = {m: TARGETS[m] for m in caps.models}
    crossfitted = "fold" in df.columns and bool(df["fold"].notna().any())  # a small file: models/crossfit.py
    split_report = _split(df, params)
    # the training rows' categoricals only: a copy of every column of them was 2 s and 0.6 GB on the default book
    spec = gbm.feature_spec(df.loc[df["role"].eq("train"), gbm.categorical_features(dictionary)], dictionary)
    report: dict[str, Any] = {"split": split_report, "models_trained": list(caps.models),
                              "n_features": len(spec.columns), "models": {}}
    held_roles, extra = (["train"], ["fold"]) if crossfitted else (["calib", "test"], [])
    held = df[df["role"].isin(held_roles)][["customer_id", "snapshot_date", "role", *extra, *targets.values()]].copy()
    _refuse_too_few_positives(df, targets, crossfitted, tp)  # before any run is opened, with the counts
    with tracking.run("train", {"features": FEATURES}, as_of=str(params.book.as_of)) as mlflow:
        run_id = mlflow.active_run().info.run_id
        rules = params.rules.quadrant if caps.archive else None
        fitted = {m: (_fit_crossfitted if crossfitted else _fit)(m, t, df, spec, tp, rules, report, held, mlflow)
                  for m, t in targets.items()}
        boosters = {m: f.booster for m, f in fitted.items()}
        metas = {m: f.meta for m, f in fitted.items()}
        importance = {m: f.importance for m, f in fitted.items()}
        tuned = {m: f.tuned for m, f in fitted.items() if f.tuning is not None}
        if tp.rolling.windows:
            _rolling(df, dictionary, params, report, mlflow)
        with staged_outputs() as out:
            for model, booster in boosters.items():
                booster.save_model(str(out.path(MODELS / model / "model.txt")),
                                   num_iteration=booster.best_iteration)
                out.json(metas[model], MODELS / model / "meta.json")
            out.parquet(held, paths.MODEL_SCORES)
            out.json(importance, IMPORTANCE)
            headline.write(out, "train", report)
            out.json({"run_id": run_id, "tracking_uri": tracking.tracking_uri(), "experiment": tracking.EXPERIMENT},
                     RUN_FILE)
        mlflow.log_params(tracking.flatten({"gbm": tp.gbm.model_dump(), "rules": params.rules.quadrant.model_dump(),
                                            "tuning.enabled": tp.tuning.enabled,
                                            "horizon_days": params.book.horizon_days, "as_of": str(params.book.as_of),
                                            "split.test": str(split_report["test"]),
                                            "split.calib": str(split_report["calib"])}))
        for model, best in tuned.items():
            mlflow.log_params({f"tuned.{model}.{k}": v for k, v in best.items()})
        mlflow.log_metrics({f"{model}.{who}.{k}": v for model, entry in report["models"].items()  # one batch
                            for who in ("lightgbm", "logistic", "rules") for k, v in entry.get(who, {}).items()
                            if isinstance(v, float) and np.isfinite(v)})
        for model in boosters:
            mlflow.log_artifact(str(MODELS / model / "model.txt"), artifact_path=f"models/{model}")
            mlflow.log_artifact(str(MODELS / model / "meta.json"), artifact_path=f"models/{model}")
        mlflow.log_artifact(str(REPORT), artifact_path="reports")
        mlflow.log_artifact(str(IMPORTANCE), artifact_path="reports")
    for model, entry in report["models"].items():
        verdict = ", ".join(f"{'beats' if entry[k] else 'does NOT beat'} {k.split('_')[1]}"
                            for k in ("beats_logistic", "beats_rules") if k in entry)
        log.info("%s: LightGBM %s on the test rows (%s)", model, verdict,
                 "out of time" if caps.snapshots else f"the source's split: {report['split']['test']}")
        if entry.get("unused_features"):
            log.info("%s: %d of %d features are used by no split (listed in train.json): %s", model,
                     len(entry["unused_features"]), len(spec.columns), ", ".join(entry["unused_features"][:8])
                     + (", ..." if len(entry["unused_features"]) > 8 else ""))


def _split(df: pd.DataFrame, params: Any) -> dict[str, Any]:
    """Give each row its role (a book: by snapshot date, out of time; a tabular source: its own split from
    validation, or cross-fitting's folds) and describe the split for the report."""
    caps, tp = params.capabilities, params.train
    if caps.snapshots:
        labelled = sorted(df.loc[df["purchase_h"].notna(), "snapshot_date"].unique())
        try:
            split = time_split(labelled, params.book.horizon_days, tp.min_train_snapshots)
        except SplitError as e:
            raise UserError(str(e)) from None
        roles = {d: split.role(d) for d in df["snapshot_date"].unique()}  # a dozen dates, not a call per row
        df["role"] = df["snapshot_date"].map(roles)
        log.info("split: train %s..%s (%d snapshots), valid %s, calib %s, test %s", split.train[0], split.train[-1],
                 len(split.train), split.valid, split.calib, split.test)
        return {"train": [str(d) for d in split.train], "valid": str(split.valid), "calib": str(split.calib),
                "test": str(split.test)}
    df["role"] = df["role"].where(df["role"] != "score")
    if "fold" in df.columns and df["fold"].notna().any():
        n, k = int(df["fold"].notna().sum()), int(df["fold"].max()) + 1
        report = {"kind": "crossfit", "folds": k, "train": f"all {n:,} labelled rows (the final model)",
                  "valid": f"the next fold of each of {k} folds (early stopping)",
                  "calib": f"out-of-fold scores of all {n:,} rows", "test": f"out of fold: {n:,} rows in {k} folds"}
        log.info("cross-fitting a small file (%s labelled rows, %d folds; validate.source.tabular.split."
                 "crossfit_max_rows); models: %s", f"{n:,}", k, ", ".join(caps.models))
        return report
    report = {"kind": "source", **{r: _role_span(df, r) for r in ("train", "valid", "calib", "test")}}
    log.info("split from the source: %s; models: %s (%s)", report, ", ".join(caps.models), caps.describe())
    return report


def _role_span(df: pd.DataFrame, role: str) -> str:
    """Rows and snapshot dates of one role of a source's own split, for the report."""
    part = df[df["role"] == role]
    if part.empty:
        return "none"
    return f"{len(part):,} rows, {part['snapshot_date'].min()}..{part['snapshot_date'].max()}"


def _refuse_too_few_positives(df: pd.DataFrame, targets: dict[str, str], crossfitted: bool,
                              tp: TrainParams) -> None:
    for model, target in targets.items():
        rows = df.loc[training.model_mask(df, model), ["role", target]]  # two columns, not a copy of every feature
        y = {r: rows.loc[rows["role"] == r, target].to_numpy(float)
             for r in (["train"] if crossfitted else training.ROLES)}
        try:
            training.check_enough_data(model, target, y, training.objective_of(model), tp.min_positives)
        except training.NotEnoughData as e:
            raise UserError(str(e)) from None


def _rolling(df: pd.DataFrame, dictionary: list[dict[str, Any]], params: Any, report: dict[str, Any],
             mlflow: Any) -> None:
    """Moro's rolling-window evaluation, for a tabular source in file (time) order; into ``report`` and MLflow."""
    tp, caps, tab = params.train, params.capabilities, params.validate_.source.tabular
    if tab is None or tab.time_order != "file":
        log.info("train.rolling: not applicable (only for a tabular source with time_order: file); skipped")
        return
    report["rolling"] = training.rolling_evaluation(df, dictionary, tp, caps.label, _window_progress)
    r = report["rolling"]["pooled"]
    log.info("rolling-window evaluation (%d windows, %s training rows each): pooled LightGBM AUC %.3f "
             "ALIFT %.3f; logistic AUC %.3f ALIFT %.3f", tp.rolling.windows, f"{tp.rolling.train_rows:,}",
             r["lightgbm_auc"], r["lightgbm_alift"], r["logistic_auc"], r["logistic_alift"])
    mlflow.log_metrics({f"{caps.target}.rolling.{k}": float(v) for k, v in r.items()})


def _fit(model: str, target: str, df: pd.DataFrame, spec: gbm.FeatureSpec, tp: TrainParams,
         rules: baselines.RuleParams | None, report: dict[str, Any], held: pd.DataFrame,
         mlflow: Any) -> training.FittedModel:
    """One model out of time (models/training.py); its entry into ``report``, its calib/test scores into ``held``
    (every row of those roles: lapse and value are scored for everyone)."""
    train_y = df.loc[training.model_mask(df, model) & df["role"].eq("train"), target]
    log.info("%s: %s training rows (%s), early stopping on %s", model, f"{len(train_y):,}",
             f"{train_y.mean():.2%} positive" if model != "value" else f"mean {train_y.mean():,.0f} CNY",
             report["split"]["valid"])
    try:
        fitted = training.fit_out_of_time(model, target, df, spec, tp, rules, report["split"],
                                          _tuner(tp, mlflow) if tp.tuning.enabled else None, _progress(model))
    except training.NotEnoughData as e:
        raise UserError(str(e)) from None
    if fitted.tuning is not None:
        report.setdefault("tuning", {})[model] = fitted.tuning
    report["models"][model] = fitted.entry
    for r in ("calib", "test"):
        rows = df.loc[df["role"].eq(r), spec.columns]  # the features only: not a copy of every column
        held.loc[held["role"] == r, f"score_{model}"] = training.predict_raw(fitted, rows, spec)
    m = fitted.entry["lightgbm"]
    log.info("%s on test %s: %s", model, report["split"]["test"], ", ".join(f"{k} {m[k]:.4f}" for k in (
        ("roc_auc", "pr_auc", "brier", "lift_at_10") if model != "value" else ("mae", "gini"))))
    return fitted


def _fit_crossfitted(model: str, target: str, df: pd.DataFrame, spec: gbm.FeatureSpec, tp: TrainParams,
                     rules: baselines.RuleParams | None, report: dict[str, Any], held: pd.DataFrame,
                     mlflow: Any) -> training.FittedModel:
    """A small tabular file, cross-fitted; its out-of-fold scores into ``held`` (for calibration)."""
    if tp.tuning.enabled:
        log.warning("train.tuning: not applied when cross-fitting a small file; the train.gbm settings are used")
    fitted, oof = training.fit_crossfitted(model, target, df, spec, tp, report["split"])
    report["models"][model] = fitted.entry
    held[f"score_{model}"] = oof.reindex(held.index)
    e = fitted.entry
    log.info("%s: cross-fitted in %d folds (early stopping at %s rounds; final model %d rounds on %s rows); "
             "out of fold: AUC %.4f (logistic %.4f)", model, report["split"]["folds"], e["fold_rounds"],
             e["best_iteration"], f"{e['rows']['train']:,}", e["lightgbm"]["roc_auc"], e["logistic"]["roc_auc"])
    return fitted


def _window_progress(k: int, n: int, w: dict[str, Any]) -> None:
    progress.info("rolling window %d/%d (rows %d-%d, %.1f%% positive): LightGBM AUC %.3f, logistic %.3f", k, n,
                  w["test_rows"][0], w["test_rows"][1] - 1, 100 * w["test_positive_rate"], w["lightgbm_auc"],
                  w["logistic_auc"])


def cli(argv: list[str] | None = None) -> int:
    return run_stage("train", main, base_parser("train", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
