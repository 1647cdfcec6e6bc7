"""LightGBM models on the snapshot features: design matrix with fixed categories, deterministic fits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models import contributions

if TYPE_CHECKING:
    import lightgbm as lgb


class GBMParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(gt=0, le=1)
    num_leaves: int = Field(ge=2, le=4096)
    min_child_samples: int = Field(ge=1)
    feature_fraction: float = Field(gt=0, le=1)
    bagging_fraction: float = Field(gt=0, le=1)
    bagging_freq: int = Field(ge=0)
    lambda_l2: float = Field(ge=0)
    max_rounds: int = Field(ge=1, le=100_000)
    early_stopping_rounds: int = Field(ge=1)
    seed: int = Field(ge=0)
    num_threads: int = Field(ge=1)
    # a ridge model in each leaf (LightGBM's linear_tree): for small, noisy files where plain trees lose to a
    # regularised linear model; explained by models/contributions.py, which LightGBM's TreeSHAP is not
    linear_tree: bool = False
    linear_lambda: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns the model uses and, for categoricals, the category list fixed at training."""

    numeric: list[str]
    categorical: dict[str, list[str]]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(numeric=list(d["numeric"]), categorical={k: list(v) for k, v in d["categorical"].items()})


def categorical_features(dictionary: list[dict[str, object]]) -> list[str]:
    """The dictionary's categorical features: all ``feature_spec`` reads of the training rows."""
    return [str(d["name"]) for d in dictionary if d["role"] == "feature" and d["dtype"] == "category"]


def feature_spec(train: pd.DataFrame, dictionary: list[dict[str, object]]) -> FeatureSpec:
    """Features from the dictionary; categories are the values seen in the training rows (of which only the
    ``categorical_features`` are read)."""
    numeric, categorical = [], {}
    for d in dictionary:
        if d["role"] != "feature":
            continue
        name = str(d["name"])
        if d["dtype"] == "category":
            categorical[name] = sorted(str(v) for v in train[name].dropna().unique())
        else:
            numeric.append(name)
    return FeatureSpec(numeric, categorical)


def _require_features(df: pd.DataFrame, spec: FeatureSpec) -> None:
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise KeyError(f"feature columns missing from the input: {missing}")


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def category_codes(s: pd.Series, cats: list[str]) -> np.ndarray:
    """Each value's position in the training categories ``cats``; -1 for a value training never saw, or missing.

    The distinct values are looked up, not every row: factorising the column (Arrow-backed strings stay in
    Arrow) and mapping its few uniques was ten times faster at 1.1M rows than matching every row as a Python
    object (1.6 s for the 7 categoricals), with the same codes.
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    position = pd.Index(cats, dtype=object).get_indexer(pd.Index(uniques).astype(object))
    return np.append(position, -1)[codes]  # code -1 (missing) picks the appended -1


def _categorical(s: pd.Series, cats: list[str]) -> pd.Categorical:
    """``s`` over the training categories: a value training never saw is missing."""
    return pd.Categorical.from_codes(category_codes(s, cats), categories=cats)


def design(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's input: floats, and categoricals with the training categories (unseen -> missing)."""
    _require_features(df, spec)
    out: dict[str, Any] = {c: _numeric(df[c]) for c in spec.numeric}
    out |= {c: _categorical(df[c], cats) for c, cats in spec.categorical.items()}
    return pd.DataFrame(out, index=df.index)[spec.columns]


def matrix(df: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """``design(df, spec)`` as LightGBM reads it, built in one pass: a column-major float64 matrix, categoricals as
    their training-category codes (unseen or missing: NaN).

    For prediction: LightGBM takes a column-major matrix without a copy, where the frame costs ``design``'s
    per-column copies, the frame's consolidation and LightGBM's own conversion to numpy (at 860k rows x 131,
    about 5 s per model on the default book's uplift stage). Same values, so the same predictions.
    """
    _require_features(df, spec)
    out = np.empty((len(df), len(spec.columns)), dtype=np.float64, order="F")
    for j, c in enumerate(spec.numeric):
        out[:, j] = _numeric(df[c]).to_numpy(dtype=np.float64, na_value=np.nan)
    for j, (c, cats) in enumerate(spec.categorical.items(), start=len(spec.numeric)):
        codes = category_codes(df[c], cats)
        out[:, j] = np.where(codes < 0, np.nan, codes)
    return out


def _lgb_params(p: GBMParams, objective: Literal["binary", "regression"]) -> dict[str, object]:
    return {
        "objective": objective, "learning_rate": p.learning_rate, "num_leaves": p.num_leaves,
        "min_child_samples": p.min_child_samples, "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction, "bagging_freq": p.bagging_freq, "lambda_l2": p.lambda_l2,
        "seed": p.seed, "num_threads": p.num_threads, "deterministic": True, "force_row_wise": True,
        "verbosity": -1, "metric": "binary_logloss" if objective == "binary" else "l2",
        **({"linear_tree": True, "linear_lambda": p.linear_lambda} if p.linear_tree else {}),
    }


def fit(X_train: pd.DataFrame, y_train: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
        p: GBMParams, objective: Literal["binary", "regression"],
        on_round: object | None = None) -> lgb.Booster:
    """Boost on the training snapshots, stop early on the validation snapshot. Same inputs, same model."""
    from models.lgbm import lgb  # here, not with the module: loading the parameters must not load LightGBM

    train = lgb.Dataset(X_train, label=y_train, categorical_feature=list(X_train.select_dtypes("category")),
                        free_raw_data=False)
    valid = lgb.Dataset(X_valid, label=y_valid, reference=train)
    callbacks: list[Any] = [lgb.early_stopping(p.early_stopping_rounds, verbose=False)]
    if on_round is not None:
        callbacks.append(on_round)  # type: ignore[arg-type]
    booster = lgb.train(_lgb_params(p, objective), train, num_boost_round=p.max_rounds, valid_sets=[valid],
                        valid_names=["valid"], callbacks=callbacks)
    return booster.free_dataset()  # the booster would otherwise keep the training frames alive as long as itself


def fit_rounds(X: pd.DataFrame, y: np.ndarray, p: GBMParams, objective: Literal["binary", "regression"],
               rounds: int) -> lgb.Booster:
    """Boost a fixed number of rounds on every row (cross-fitting's final model: the rounds come from the
    folds' early stopping, so no row has to be held back for it)."""
    from models.lgbm import lgb  # here, not with the module: loading the parameters must not load LightGBM

    train = lgb.Dataset(X, label=y, categorical_feature=list(X.select_dtypes("category")), free_raw_data=False)
    return lgb.train(_lgb_params(p, objective), train, num_boost_round=max(int(rounds), 1)).free_dataset()


def predict(booster: lgb.Booster, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Raw predictions at the best iteration, of a ``design`` frame or its ``matrix``."""
    return np.asarray(booster.predict(X, num_iteration=booster.best_iteration or None), dtype=float)


def mean_abs_contributions(booster: lgb.Booster, X: pd.DataFrame, max_rows: int = 20_000,
                           centre: dict[str, float] | None = None) -> pd.Series:
    """Mean |contribution| per feature (TreeSHAP; models/contributions.py for linear trees), on a stable
    row sample."""
    sample = X.iloc[np.linspace(0, len(X) - 1, min(max_rows, len(X))).astype(int)] if len(X) else X
    contrib = contributions.contributions(booster, sample, centre)
    vals = np.abs(np.asarray(contrib)[:, :-1]).mean(axis=0)
    return pd.Series(vals, index=X.columns).sort_values(ascending=False)


def unused_features(booster: lgb.Booster) -> list[str]:
    """Features no tree splits on: candidates to drop, or a sign that a column arrived empty or constant."""
    splits = booster.feature_importance("split", iteration=booster.best_iteration or None)
    return [name for name, n in zip(booster.feature_name(), splits, strict=True) if n == 0]


def predict_output(booster: lgb.Booster, spec: FeatureSpec, df: pd.DataFrame, target_transform: str | None,
                   calibrator: dict[str, Any] | None, X: np.ndarray | None = None) -> np.ndarray:
    """What a saved model means for ``df``: premium in CNY (log1p target) or a calibrated probability.

    The one definition shared by the pipeline's scoring, the registered MLflow model and its signature.
    ``X``: ``matrix(df, spec)`` when the caller already built it (models that share a feature spec share it).
    """
    from models import calibration

    raw = predict(booster, matrix(df, spec) if X is None else X)
    if target_transform == "log1p":
        return np.expm1(raw)
    return calibration.apply(calibrator, raw) if calibrator is not None else raw
