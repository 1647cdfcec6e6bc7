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
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.capabilities import TARGETS
from models import baselines, crossfit, gbm, tuning
from models.metrics import alift, classification_metrics, regression_metrics
from models.splits import SplitError, rolling_windows, time_split
from pipelines import headline, paths, tracking
from pipelines.cli import base_parser, progress_logger, run_stage
from pipelines.errors import UserError, require
from pipelines.io import staged_outputs
from pipelines.params import MinPositives, TrainParams, load_params

log = logging.getLogger("pipelines.train")
progress = progress_logger("train")
FEATURES, DICTIONARY, MODELS, REPORT = paths.FEATURES, paths.DICTIONARY, paths.MODELS, paths.report("train")
RANK_METRICS = ("roc_auc", "pr_auc", "lift_at_5", "capture_at_5", "lift_at_10", "capture_at_10", "lift_at_20",
                "capture_at_20")
RUN_FILE = paths.RUN_FILE  # the run calibrate, register and truth_check add to (tracking state, not DVC-tracked)
IMPORTANCE = paths.IMPORTANCE  # not a DVC metric: nested maps make `dvc metrics show` unreadable


def _progress(name: str) -> Any:
    def cb(env: Any) -> None:
        if (env.iteration + 1) % 100 == 0:
            res = env.evaluation_result_list[0] if env.evaluation_result_list else None
            progress.info("%s: round %d%s", name, env.iteration + 1, f", valid {res[1]} {res[2]:.5f}" if res else "")
    return cb


def _rows(df: pd.DataFrame, model: str) -> pd.DataFrame:
    if model == "purchase":
        return df[df["purchase_h"].notna()]
    if model == "lapse":
        return df[df["lapse_h"].notna()]
    return df[df["purchase_h"].eq(1)]  # value: premium given a purchase


def check_enough_data(model: str, target: str, y: dict[str, np.ndarray], objective: str,
                      min_pos: MinPositives) -> None:
    """Refuse to train on too few positives, naming the counts: a model fitted on noise is worse than none."""
    if objective != "binary":
        counts = {r: int(len(v)) for r, v in y.items()}
        need = {r: (min_pos.train if r == "train" else min_pos.holdout) for r in y}
        what = "purchases (rows with a premium)"
    else:
        counts = {r: int(np.nansum(v)) for r, v in y.items()}
        need = {r: (min_pos.train if r == "train" else min_pos.holdout) for r in y}
        what = f"positive '{target}' labels"
    short = {r: c for r, c in counts.items() if c < need[r]}
    if short:
        detail = ", ".join(f"{r}: {c} (need {need[r]})" for r, c in short.items())
        raise UserError(f"not enough data to train the {model} model: too few {what} - {detail}. "
                        f"Counts per role: {counts}. Use more history (features.n_train_snapshots), a larger "
                        "book, or lower train.min_positives if you accept a noisier model.")


def _tune(model: str, X: dict[str, pd.DataFrame], y: dict[str, np.ndarray], tp: TrainParams,
          objective: Literal["binary", "regression"], mlflow: Any) -> tuple[gbm.GBMParams, list[dict[str, Any]]]:
    """Optuna search on the validation snapshot, each trial a nested MLflow run."""
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
    tracking.ensure_store()  # fail fast on a misconfigured MLFLOW_TRACKING_URI, before any work
    tp = params.train
    require((FEATURES, DICTIONARY), "run the features stage first (dvc repro features)")
    df = pd.read_parquet(FEATURES)
    dictionary = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"]).dt.date
    caps = params.capabilities
    targets = {m: TARGETS[m] for m in caps.models}
    crossfitted = "fold" in df.columns and bool(df["fold"].notna().any())  # a small file: models/crossfit.py
    split_report = _split(df, params)
    spec = gbm.feature_spec(df[df["role"] == "train"], dictionary)
    report: dict[str, Any] = {"split": split_report, "models_trained": list(caps.models),
                              "n_features": len(spec.columns), "models": {}}
    held_roles, extra = (["train"], ["fold"]) if crossfitted else (["calib", "test"], [])
    held = df[df["role"].isin(held_roles)][["customer_id", "snapshot_date", "role", *extra, *targets.values()]].copy()
    for model, target in targets.items():  # before any run is opened: refuse early, with the counts
        rows = _rows(df, model)
        check_enough_data(model, target, {r: rows.loc[rows["role"] == r, target].to_numpy(float)
                                          for r in (["train"] if crossfitted else ["train", "valid", "calib", "test"])},
                          "regression" if model == "value" else "binary", tp.min_positives)
    with tracking.run("train", {"features": FEATURES}, as_of=str(params.book.as_of)) as mlflow:
        run_id = mlflow.active_run().info.run_id
        if crossfitted:
            boosters, metas, importance, tuned = _train_crossfit(df, spec, targets, tp, report, held)
        else:
            boosters, metas, importance, tuned = _train_all(df, spec, targets, tp,
                                                            params.rules.quadrant if caps.archive else None, report,
                                                            held, mlflow)
        if tp.rolling.windows:
            tab = params.validate_.source.tabular
            if tab is not None and tab.time_order == "file":
                report["rolling"] = rolling_evaluation(df, dictionary, tp, caps.label)
                r = report["rolling"]["pooled"]
                log.info("rolling-window evaluation (%d windows, %s training rows each): pooled LightGBM AUC %.3f "
                         "ALIFT %.3f; logistic AUC %.3f ALIFT %.3f", tp.rolling.windows, f"{tp.rolling.train_rows:,}",
                         r["lightgbm_auc"], r["lightgbm_alift"], r["logistic_auc"], r["logistic_alift"])
                mlflow.log_metrics({f"{caps.target}.rolling.{k}": float(v) for k, v in r.items()})
            else:
                log.info("train.rolling: not applicable (only for a tabular source with time_order: file); skipped")
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
        for model, entry in report["models"].items():
            for who in ("lightgbm", "logistic", "rules"):
                for k, v in entry.get(who, {}).items():
                    if isinstance(v, float) and np.isfinite(v):
                        mlflow.log_metric(f"{model}.{who}.{k}", v)
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


def rolling_evaluation(df: pd.DataFrame, dictionary: list[dict[str, Any]], tp: TrainParams,
                       label: str = "purchase_h") -> dict[str, Any]:
    """Moro et al.'s rolling window over time-ordered rows: each test window scored by LightGBM and logistic
    models fitted on the rows just before it; per window and pooled AUC and ALIFT (of the ``label`` column)."""
    rows = df[df[label].notna()].reset_index(drop=True)  # file (time) order
    test_start = int(np.flatnonzero(rows["role"].to_numpy() == "test")[0])
    windows = rolling_windows(len(rows), test_start, tp.rolling.windows, tp.rolling.train_rows)
    y_all = rows[label].to_numpy(float)
    per: list[dict[str, Any]] = []
    pooled: dict[str, list[np.ndarray]] = {"y": [], "lightgbm": [], "logistic": []}
    for k, w in enumerate(windows, 1):
        tr, va, te = (rows.iloc[a:b] for a, b in (w.train, w.valid, w.test))
        spec = gbm.feature_spec(tr, dictionary)
        booster = gbm.fit(gbm.design(tr, spec), y_all[w.train[0]:w.train[1]], gbm.design(va, spec),
                          y_all[w.valid[0]:w.valid[1]], tp.gbm, "binary")
        fit_rows = pd.concat([tr, va])
        lr = baselines.logistic_baseline(spec, tp.gbm.seed).fit(
            baselines.lr_frame(gbm.design(fit_rows, spec), spec), fit_rows[label].to_numpy(int))
        yt = y_all[w.test[0]:w.test[1]]
        p = gbm.predict(booster, gbm.design(te, spec))
        q = lr.predict_proba(baselines.lr_frame(gbm.design(te, spec), spec))[:, 1]
        per.append({"train_rows": list(w.train), "test_rows": list(w.test), "test_positive_rate": float(yt.mean()),
                    "lightgbm_auc": classification_metrics(yt, p)["roc_auc"], "lightgbm_alift": alift(yt, p),
                    "logistic_auc": classification_metrics(yt, q)["roc_auc"], "logistic_alift": alift(yt, q),
                    "rounds": int(booster.best_iteration)})
        progress.info("rolling window %d/%d (rows %d-%d, %.1f%% positive): LightGBM AUC %.3f, logistic %.3f", k,
                      len(windows), w.test[0], w.test[1] - 1, 100 * yt.mean(), per[-1]["lightgbm_auc"],
                      per[-1]["logistic_auc"])
        for key, v in (("y", yt), ("lightgbm", p), ("logistic", q)):
            pooled[key].append(v)
    y, p, q = (np.concatenate(pooled[k]) for k in ("y", "lightgbm", "logistic"))
    return {"windows": per, "train_rows": tp.rolling.train_rows,
            "pooled": {"test_rows": len(y), "lightgbm_auc": classification_metrics(y, p)["roc_auc"],
                       "lightgbm_alift": alift(y, p), "logistic_auc": classification_metrics(y, q)["roc_auc"],
                       "logistic_alift": alift(y, q)}}


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
        df["role"] = df["snapshot_date"].map(split.role)
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


def _train_crossfit(df: pd.DataFrame, spec: gbm.FeatureSpec, targets: dict[str, str], tp: TrainParams,
                    report: dict[str, Any], held: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any],
                                                                         dict[str, Any], dict[str, dict[str, Any]]]:
    """A small tabular file: each model cross-fitted (out-of-fold test metrics and scores for calibration, a
    final model on every row); fills ``report`` and ``held`` (the out-of-fold scores) in place."""
    if tp.tuning.enabled:
        log.warning("train.tuning: not applied when cross-fitting a small file; the train.gbm settings are used")
    boosters: dict[str, Any] = {}
    metas: dict[str, Any] = {}
    importance: dict[str, dict[str, float]] = {}
    for model, target in targets.items():
        rows = _rows(df, model)
        y = rows[target].to_numpy(float)
        cf = crossfit.cross_fit(rows, y, rows["fold"].to_numpy(int), spec, tp.gbm, tp.lr_max_rows)
        boosters[model] = cf.booster
        entry: dict[str, Any] = {"best_iteration": cf.rounds, "fold_rounds": cf.fold_rounds,
                                 "rows": {"train": len(rows), "test (out of fold)": len(rows)},
                                 "lightgbm": classification_metrics(y, cf.oof),
                                 "logistic": classification_metrics(y, cf.oof_logistic)}
        entry["beats_logistic"] = entry["lightgbm"]["roc_auc"] > entry["logistic"]["roc_auc"]
        report["models"][model] = entry
        importance[model] = {k: float(v) for k, v in gbm.mean_abs_contributions(
            cf.booster, gbm.design(rows, spec)).items()}
        entry["unused_features"] = gbm.unused_features(cf.booster)
        metas[model] = {"objective": "binary", "target": target, "target_transform": None,
                        "best_iteration": cf.rounds, "features": spec.to_dict(), "params": tp.gbm.model_dump(),
                        "split": report["split"]}
        held[f"score_{model}"] = pd.Series(cf.oof, index=rows.index).reindex(held.index)
        log.info("%s: cross-fitted in %d folds (early stopping at %s rounds; final model %d rounds on %s rows); "
                 "out of fold: AUC %.4f (logistic %.4f)", model, report["split"]["folds"], cf.fold_rounds, cf.rounds,
                 f"{len(rows):,}", entry["lightgbm"]["roc_auc"], entry["logistic"]["roc_auc"])
    return boosters, metas, importance, {}


def _role_span(df: pd.DataFrame, role: str) -> str:
    """Rows and snapshot dates of one role of a source's own split, for the report."""
    part = df[df["role"] == role]
    if part.empty:
        return "none"
    return f"{len(part):,} rows, {part['snapshot_date'].min()}..{part['snapshot_date'].max()}"


def _train_all(df: pd.DataFrame, spec: gbm.FeatureSpec, targets: dict[str, str], tp: TrainParams,
               rules: baselines.RuleParams | None, report: dict[str, Any],
               held: pd.DataFrame, mlflow: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                                         dict[str, dict[str, Any]]]:
    """Fit each model (tuned first when asked) with its baselines; fills ``report`` and ``held`` in place.
    ``rules`` None: the source has no archive for the rule baselines (they are left out of the report)."""
    boosters: dict[str, Any] = {}
    metas: dict[str, Any] = {}
    importance: dict[str, dict[str, float]] = {}
    tuned: dict[str, dict[str, Any]] = {}
    for model, target in targets.items():
        rows = _rows(df, model)
        parts = {r: rows[rows["role"] == r] for r in ("train", "valid", "calib", "test")}
        for r, part in parts.items():
            if part.empty:
                raise UserError(f"model '{model}': no {r} rows on snapshot(s) of role {r}")
        y = {r: part[target].to_numpy(float) for r, part in parts.items()}
        objective: Literal["binary", "regression"] = "regression" if model == "value" else "binary"
        # premiums are heavy-tailed: fit log1p, report in CNY
        y_fit = {r: np.log1p(v) for r, v in y.items()} if objective == "regression" else y
        X = {r: gbm.design(part, spec) for r, part in parts.items()}
        log.info("%s: %s training rows (%s), early stopping on %s", model, f"{len(X['train']):,}",
                 f"{y['train'].mean():.2%} positive" if objective == "binary" else f"mean {y['train'].mean():,.0f} CNY",
                 report["split"]["valid"])
        gbm_params = tp.gbm
        if tp.tuning.enabled:
            gbm_params, history = _tune(model, X, y_fit, tp, objective, mlflow)
            tuned[model] = {k: v for k, v in gbm_params.model_dump().items() if v != getattr(tp.gbm, k)}
            report.setdefault("tuning", {})[model] = {"trials": len(history), "best": gbm_params.model_dump(),
                                                       "best_valid_loss": min(h["value"] for h in history)}
        booster = gbm.fit(X["train"], y_fit["train"], X["valid"], y_fit["valid"], gbm_params, objective,
                          on_round=_progress(model))
        boosters[model] = booster
        pred_test = gbm.predict(booster, X["test"])
        raw = {"test": np.expm1(pred_test) if objective == "regression" else pred_test}
        entry: dict[str, Any] = {"best_iteration": booster.best_iteration,
                                 "rows": {r: len(p) for r, p in parts.items()}}
        if objective == "binary":
            entry["lightgbm"] = classification_metrics(y["test"], raw["test"])
            lr_rows = parts["train"].sample(min(tp.lr_max_rows, len(parts["train"])), random_state=tp.gbm.seed)
            lr = baselines.logistic_baseline(spec, tp.gbm.seed)
            lr.fit(baselines.lr_frame(gbm.design(lr_rows, spec), spec), lr_rows[target].to_numpy(int))
            p_lr = lr.predict_proba(baselines.lr_frame(X["test"], spec))[:, 1]
            entry["logistic"] = classification_metrics(y["test"], p_lr)
            entry["beats_logistic"] = entry["lightgbm"]["roc_auc"] > entry["logistic"]["roc_auc"]
            if rules is not None:
                rule = (baselines.rule_purchase_score(parts["test"], rules) if model == "purchase"
                        else baselines.rule_lapse_score(parts["test"]))
                rule_m = classification_metrics(y["test"], (rule - rule.min()) / (np.ptp(rule) or 1.0))
                entry["rules"] = {k: rule_m[k] for k in RANK_METRICS}
                entry["beats_rules"] = entry["lightgbm"]["roc_auc"] > entry["rules"]["roc_auc"]
        else:
            entry["lightgbm"] = regression_metrics(y["test"], raw["test"])
            band_mean = parts["train"].groupby("income_band", dropna=False)[target].mean()
            rule = parts["test"]["income_band"].map(band_mean).fillna(parts["train"][target].mean()).to_numpy(float)
            entry["rules"] = regression_metrics(y["test"], rule)
            entry["beats_rules"] = entry["lightgbm"]["gini"] > entry["rules"]["gini"]
        imp = gbm.mean_abs_contributions(booster, X["test"])
        importance[model] = {k: float(v) for k, v in imp.items()}  # every feature, most important first
        entry["unused_features"] = gbm.unused_features(booster)
        report["models"][model] = entry
        metas[model] = {"objective": objective, "target": target,
                        "target_transform": "log1p" if objective == "regression" else None,
                        "best_iteration": booster.best_iteration, "features": spec.to_dict(),
                        "params": gbm_params.model_dump(), "split": report["split"]}
        # raw scores for every calib/test row of the book (lapse and value are scored for everyone)
        for r in ("calib", "test"):
            mask = held["role"] == r
            pred = gbm.predict(booster, gbm.design(df[df["role"] == r], spec))
            held.loc[mask, f"score_{model}"] = np.expm1(pred) if objective == "regression" else pred
        m = entry["lightgbm"]
        log.info("%s on test %s: %s", model, report["split"]["test"], ", ".join(f"{k} {m[k]:.4f}" for k in (
            ("roc_auc", "pr_auc", "brier", "lift_at_10") if objective == "binary" else ("mae", "gini"))))
    return boosters, metas, importance, tuned


def cli(argv: list[str] | None = None) -> int:
    return run_stage("train", main, base_parser("train", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
