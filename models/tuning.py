"""Optional hyperparameter search for the LightGBM models (Optuna, TPE), on the validation snapshot only.

Each trial boosts on the training snapshots and stops early on the validation snapshot; the trial's
value is the best validation loss (binary log-loss or l2). The calibration and test snapshots are never
seen, so the out-of-time evaluation stays honest. The search is bounded by a number of trials and a
wall-clock budget, and seeded so that the same data and params give the same trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.gbm import GBMParams, fit

if TYPE_CHECKING:
    import optuna


class TuningParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    n_trials: int = Field(default=20, ge=1, le=1000)
    timeout_minutes: float = Field(default=10.0, gt=0)   # per model
    num_leaves: tuple[int, int] = (8, 255)
    min_child_samples: tuple[int, int] = (20, 2000)
    feature_fraction: tuple[float, float] = (0.4, 1.0)
    lambda_l2: tuple[float, float] = (1e-3, 100.0)


TrialCallback = Callable[[int, dict[str, Any], float, int], None]


def _suggest(trial: optuna.Trial, space: TuningParams) -> dict[str, Any]:
    return {
        "num_leaves": trial.suggest_int("num_leaves", *space.num_leaves, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", *space.min_child_samples, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", *space.feature_fraction),
        "lambda_l2": trial.suggest_float("lambda_l2", *space.lambda_l2, log=True),
    }


def search(X_train: pd.DataFrame, y_train: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
           base: GBMParams, objective: Literal["binary", "regression"], space: TuningParams,
           on_trial: TrialCallback | None = None) -> tuple[GBMParams, list[dict[str, Any]]]:
    """Best parameters found (the untuned ``base`` is always trial 0, so tuning never does worse on
    validation than the defaults) and the trial history."""
    import optuna  # here, not with the module: loading the parameters must not load Optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=base.seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({k: getattr(base, k) for k in ("num_leaves", "min_child_samples", "feature_fraction",
                                                       "lambda_l2")})
    history: list[dict[str, Any]] = []

    def run(trial: optuna.Trial) -> float:
        params = base.model_copy(update=_suggest(trial, space))
        booster = fit(X_train, y_train, X_valid, y_valid, params, objective)
        score = float(next(iter(booster.best_score["valid"].values())))
        history.append({"trial": trial.number, "value": score, "best_iteration": booster.best_iteration,
                        **trial.params})
        if on_trial is not None:
            on_trial(trial.number, dict(trial.params), score, booster.best_iteration)
        return score

    study.optimize(run, n_trials=space.n_trials, timeout=space.timeout_minutes * 60, gc_after_trial=True)
    return base.model_copy(update=study.best_params), history
