"""The train stage's modelling: each model fitted out of time (or cross-fitted on a small file) beside its
logistic and rule baselines, and Moro et al.'s rolling-window evaluation.

Pure: frames and typed parameters in, a ``FittedModel`` (booster, metadata, report entry, importances, held-out
scores) out. The stage writes the files, opens the MLflow run and passes in what needs it (a tuning callback
that logs trials, a progress callback), so nothing here knows about files or tracking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models import baselines, contributions, crossfit, gbm
from models.metrics import alift, classification_metrics, regression_metrics
from models.splits import rolling_windows
from models.tuning import TuningParams

if TYPE_CHECKING:
    import lightgbm as lgb

RANK_METRICS = ("roc_auc", "pr_auc", "lift_at_5", "capture_at_5", "lift_at_10", "capture_at_10", "lift_at_20",
                "capture_at_20")
ROLES = ("train", "valid", "calib", "test")
Objective = Literal["binary", "regression"]
# (model, designs by role, fit targets by role, objective) -> (the chosen params, the trial history)
Tuner = Callable[[str, dict[str, pd.DataFrame], dict[str, np.ndarray], Objective],
                 tuple[gbm.GBMParams, list[dict[str, Any]]]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MinPositives(_Strict):
    """Below these counts a model is not trained: its numbers would be noise (commercial tools refuse too)."""

    train: int = Field(ge=1)
    holdout: int = Field(ge=1)  # each of the valid, calibration and test snapshots


class RollingParams(_Strict):
    """Rolling-window evaluation (Moro et al. 2014) for sources whose rows are in time order (tabular,
    ``time_order: file``): the test rows in ``windows`` consecutive windows, each scored by a model fitted on
    the ``train_rows`` rows before it. 0 windows: off. Reported beside the single out-of-time split."""

    windows: int = Field(default=0, ge=0, le=50)
    train_rows: int = Field(default=20_000, ge=100)


class TrainParams(_Strict):
    gbm: gbm.GBMParams
    rolling: RollingParams = RollingParams()
    tuning: TuningParams
    min_train_snapshots: int = Field(ge=1, le=120)
    min_positives: MinPositives
    lr_max_rows: int = Field(ge=1000)  # rows sampled to fit the logistic baseline
    importance_max_rows: int = Field(default=5_000, ge=100)  # rows TreeSHAP explains for the importances


class NotEnoughData(ValueError):
    """Too few positives (or purchases, for the value model) to fit a model worth having."""


@dataclass
class FittedModel:
    booster: lgb.Booster
    meta: dict[str, Any]          # model.txt's companion: objective, target, features, params, split
    entry: dict[str, Any]         # the model's part of train.json: rows, metrics against the baselines
    importance: dict[str, float]  # mean |TreeSHAP| per feature, most important first
    tuned: dict[str, Any] = field(default_factory=dict)  # params the search changed from train.gbm
    tuning: dict[str, Any] | None = None                 # the search's summary for train.json


def objective_of(model: str) -> Objective:
    return "regression" if model == "value" else "binary"


def model_mask(df: pd.DataFrame, model: str) -> pd.Series:
    """Which rows a model learns from: labelled ones; for value, the purchases (premium given a purchase)."""
    if model == "purchase":
        return df["purchase_h"].notna()
    if model == "lapse":
        return df["lapse_h"].notna()
    return df["purchase_h"].eq(1)


def model_rows(df: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows a model learns from (see ``model_mask``), as a copy."""
    return df[model_mask(df, model)]


def check_enough_data(model: str, target: str, y: dict[str, np.ndarray], objective: str,
                      min_pos: MinPositives) -> None:
    """Refuse to train on too few positives, naming the counts: a model fitted on noise is worse than none."""
    if objective != "binary":
        counts = {r: int(len(v)) for r, v in y.items()}
        what = "purchases (rows with a premium)"
    else:
        counts = {r: int(np.nansum(v)) for r, v in y.items()}
        what = f"positive '{target}' labels"
    need = {r: (min_pos.train if r == "train" else min_pos.holdout) for r in y}
    short = {r: c for r, c in counts.items() if c < need[r]}
    if short:
        detail = ", ".join(f"{r}: {c} (need {need[r]})" for r, c in short.items())
        raise NotEnoughData(f"not enough data to train the {model} model: too few {what} - {detail}. "
                            f"Counts per role: {counts}. Use more history (features.n_train_snapshots), a larger "
                            "book, or lower train.min_positives if you accept a noisier model.")


def _baselines(model: str, target: str, df: pd.DataFrame, masks: dict[str, pd.Series], y: dict[str, np.ndarray],
               X: dict[str, pd.DataFrame], spec: gbm.FeatureSpec, tp: TrainParams, rules: baselines.RuleParams | None,
               entry: dict[str, Any]) -> None:
    """The logistic and rule baselines on the test rows, beside LightGBM's metrics in ``entry``."""
    if objective_of(model) == "binary":
        # the positions DataFrame.sample draws from the training rows (the same generator over the same length)
        n_train = len(X["train"])
        pos = pd.RangeIndex(n_train).to_series().sample(min(tp.lr_max_rows, n_train), random_state=tp.gbm.seed)
        lr = baselines.logistic_baseline(spec, tp.gbm.seed)
        lr.fit(baselines.lr_frame(X["train"].iloc[pos.to_numpy()], spec), y["train"][pos.to_numpy()].astype(int))
        p_lr = lr.predict_proba(baselines.lr_frame(X["test"], spec))[:, 1]
        entry["logistic"] = classification_metrics(y["test"], p_lr)
        entry["beats_logistic"] = entry["lightgbm"]["roc_auc"] > entry["logistic"]["roc_auc"]
        if rules is not None:
            test = df[masks["test"]]
            rule = (baselines.rule_purchase_score(test, rules) if model == "purchase"
                    else baselines.rule_lapse_score(test))
            rule_m = classification_metrics(y["test"], (rule - rule.min()) / (np.ptp(rule) or 1.0))
            entry["rules"] = {k: rule_m[k] for k in RANK_METRICS}
            entry["beats_rules"] = entry["lightgbm"]["roc_auc"] > entry["rules"]["roc_auc"]
    else:
        train = df.loc[masks["train"], ["income_band", target]]
        band_mean = train.groupby("income_band", dropna=False)[target].mean()
        rule = (df.loc[masks["test"], "income_band"].map(band_mean).fillna(train[target].mean())
                .to_numpy(float))
        entry["rules"] = regression_metrics(y["test"], rule)
        entry["beats_rules"] = entry["lightgbm"]["gini"] > entry["rules"]["gini"]


def fit_out_of_time(model: str, target: str, df: pd.DataFrame, spec: gbm.FeatureSpec, tp: TrainParams,
                    rules: baselines.RuleParams | None, split: dict[str, Any], tune: Tuner | None = None,
                    on_round: Callable[[Any], None] | None = None) -> FittedModel:
    """One model on the rows' roles (train, early stopping on valid), tuned first when ``tune`` is given, with
    its baselines on the test rows. ``rules`` None: the source has no archive for the rule baselines."""
    keep = model_mask(df, model)
    masks = {r: keep & df["role"].eq(r) for r in ROLES}
    for r, mask in masks.items():
        if not mask.any():
            raise NotEnoughData(f"model '{model}': no {r} rows on snapshot(s) of role {r}")
    y = {r: df.loc[mask, target].to_numpy(float) for r, mask in masks.items()}
    objective = objective_of(model)
    # premiums are heavy-tailed: fit log1p, report in CNY
    y_fit = {r: np.log1p(v) for r, v in y.items()} if objective == "regression" else y
    # each role's rows copied from df only while its design is built: holding every role's full-width copy beside
    # the designs was the stage's peak (the 1M book's training rows: 1.4 GiB more)
    X = {r: gbm.design(df[mask], spec) for r, mask in masks.items()}
    gbm_params, tuned, tuning = tp.gbm, {}, None
    if tune is not None:
        gbm_params, history = tune(model, X, y_fit, objective)
        tuned = {k: v for k, v in gbm_params.model_dump().items() if v != getattr(tp.gbm, k)}
        tuning = {"trials": len(history), "best": gbm_params.model_dump(),
                  "best_valid_loss": min(h["value"] for h in history)}
    booster = gbm.fit(X["train"], y_fit["train"], X["valid"], y_fit["valid"], gbm_params, objective,
                      on_round=on_round)
    pred_test = gbm.predict(booster, X["test"])
    raw_test = np.expm1(pred_test) if objective == "regression" else pred_test
    entry: dict[str, Any] = {"best_iteration": booster.best_iteration, "rows": {r: len(x) for r, x in X.items()}}
    entry["lightgbm"] = (classification_metrics(y["test"], raw_test) if objective == "binary"
                         else regression_metrics(y["test"], raw_test))
    _baselines(model, target, df, masks, y, X, spec, tp, rules, entry)
    centre = _centre(booster, X["train"])
    importance = {k: float(v) for k, v in gbm.mean_abs_contributions(
        booster, X["test"], max_rows=tp.importance_max_rows, centre=centre).items()}
    entry["unused_features"] = gbm.unused_features(booster)
    meta = {"objective": objective, "target": target,
            "target_transform": "log1p" if objective == "regression" else None,
            "best_iteration": booster.best_iteration, "features": spec.to_dict(), "params": gbm_params.model_dump(),
            "split": split, **({"linear_centre": centre} if centre is not None else {})}
    return FittedModel(booster, meta, entry, importance, tuned, tuning)


def _centre(booster: lgb.Booster, X_train: pd.DataFrame) -> dict[str, float] | None:
    """A linear-tree model's feature centres (its training means), kept in meta.json so that its reasons are
    measured from the same point whatever batch is scored; None for plain trees."""
    return contributions.linear_centre(X_train) if contributions.is_linear(booster) else None


def predict_raw(fitted: FittedModel, frame: pd.DataFrame, spec: gbm.FeatureSpec) -> np.ndarray:
    """The model's raw output on ``frame`` (value: premium in CNY, back from log1p)."""
    pred = gbm.predict(fitted.booster, gbm.matrix(frame, spec))
    return np.expm1(pred) if fitted.meta["objective"] == "regression" else pred


def fit_crossfitted(model: str, target: str, df: pd.DataFrame, spec: gbm.FeatureSpec, tp: TrainParams,
                    split: dict[str, Any]) -> tuple[FittedModel, pd.Series]:
    """A small tabular file: out-of-fold test metrics and scores (returned, indexed like ``df``), and a final
    model on every labelled row."""
    rows = model_rows(df, model)
    y = rows[target].to_numpy(float)
    cf = crossfit.cross_fit(rows, y, rows["fold"].to_numpy(int), spec, tp.gbm, tp.lr_max_rows)
    entry: dict[str, Any] = {"best_iteration": cf.rounds, "fold_rounds": cf.fold_rounds,
                             "rows": {"train": len(rows), "test (out of fold)": len(rows)},
                             "lightgbm": classification_metrics(y, cf.oof),
                             "logistic": classification_metrics(y, cf.oof_logistic)}
    entry["beats_logistic"] = entry["lightgbm"]["roc_auc"] > entry["logistic"]["roc_auc"]
    design = gbm.design(rows, spec)
    centre = _centre(cf.booster, design)
    importance = {k: float(v) for k, v in gbm.mean_abs_contributions(
        cf.booster, design, max_rows=tp.importance_max_rows, centre=centre).items()}
    entry["unused_features"] = gbm.unused_features(cf.booster)
    meta = {"objective": "binary", "target": target, "target_transform": None, "best_iteration": cf.rounds,
            "features": spec.to_dict(), "params": tp.gbm.model_dump(), "split": split,
            **({"linear_centre": centre} if centre is not None else {})}
    return FittedModel(cf.booster, meta, entry, importance), pd.Series(cf.oof, index=rows.index)


def rolling_evaluation(df: pd.DataFrame, dictionary: list[dict[str, Any]], tp: TrainParams,
                       label: str = "purchase_h",
                       on_window: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
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
        if on_window is not None:
            on_window(k, len(windows), per[-1])
        for key, v in (("y", yt), ("lightgbm", p), ("logistic", q)):
            pooled[key].append(v)
    y, p, q = (np.concatenate(pooled[k]) for k in ("y", "lightgbm", "logistic"))
    return {"windows": per, "train_rows": tp.rolling.train_rows,
            "pooled": {"test_rows": len(y), "lightgbm_auc": classification_metrics(y, p)["roc_auc"],
                       "lightgbm_alift": alift(y, p), "logistic_auc": classification_metrics(y, q)["roc_auc"],
                       "logistic_alift": alift(y, q)}}
