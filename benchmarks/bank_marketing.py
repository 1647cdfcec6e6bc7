"""UCI Bank Marketing: out-of-time evaluation the way Moro et al. (2014) did it, without ``duration``.

The file is in date order (May 2008 - Nov 2010). A rolling window trains on the 20,000 contacts before each
test window (the last 10% of them for early stopping, in time order) and tests on the next window; the
last 20% of the file is covered by five consecutive windows. AUC and ALIFT (area under the cumulative
gains curve: 0.5 random, 1 perfect) are reported per window and pooled, beside a logistic regression and a
plain random-split 5-fold AUC for reference (optimistic: it lets the model see the future).
``duration`` (call length) is never used: it is only known after the call.

    .venv/bin/python benchmarks/bank_marketing.py      # writes data/benchmarks/bank_marketing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.metrics import alift

log = logging.getLogger("benchmarks.bank_marketing")
DATA = Path(__file__).resolve().parents[1].parent / "shared/datasets/bank_marketing/bank-additional-full.csv"
OUT = Path("data/benchmarks/bank_marketing.json")
CATEGORICAL = ["job", "marital", "education", "default", "housing", "loan", "contact", "month", "day_of_week",
               "poutcome"]
LEAKY = ["duration"]


def load(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.read_csv(path, sep=";")
    y = (df.pop("y") == "yes").to_numpy(int)
    df = df.drop(columns=LEAKY)
    df["previously_contacted"] = (df["pdays"] != 999).astype(int)
    df["pdays"] = df["pdays"].where(df["pdays"] != 999)  # 999 = never contacted before: missing, not far
    for c in CATEGORICAL:
        df[c] = df[c].astype("category")
    return df, y


def fit_gbm(X: pd.DataFrame, y: np.ndarray, seed: int) -> lgb.Booster:
    cut = int(len(X) * 0.9)  # early stopping on the most recent 10% of the training window
    params = {"objective": "binary", "learning_rate": 0.03, "num_leaves": 15, "min_child_samples": 50,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 5.0,
              "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1}
    train = lgb.Dataset(X.iloc[:cut], y[:cut])
    valid = lgb.Dataset(X.iloc[cut:], y[cut:], reference=train)
    return lgb.train(params, train, 2000, valid_sets=[valid], callbacks=[lgb.early_stopping(100, verbose=False)])


def fit_logistic(X: pd.DataFrame, y: np.ndarray) -> Pipeline:
    numeric = [c for c in X.columns if c not in CATEGORICAL]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    return Pipeline([("pre", pre), ("lr", LogisticRegression(C=0.1, max_iter=2000))]).fit(X, y)


def rolling(X: pd.DataFrame, y: np.ndarray, window: int, test_share: float, n_windows: int, seed: int,
            ) -> dict[str, Any]:
    start = int(len(X) * (1 - test_share))
    edges = np.linspace(start, len(X), n_windows + 1).astype(int)
    per, pooled = [], {"y": [], "gbm": [], "lr": []}
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        lo = max(0, a - window)
        booster = fit_gbm(X.iloc[lo:a], y[lo:a], seed)
        p = booster.predict(X.iloc[a:b], num_iteration=booster.best_iteration)
        q = fit_logistic(X.iloc[lo:a], y[lo:a]).predict_proba(X.iloc[a:b])[:, 1]
        yt = y[a:b]
        per.append({"train_rows": f"{lo}-{a - 1}", "test_rows": f"{a}-{b - 1}", "test_positive_rate": float(yt.mean()),
                    "lightgbm_auc": float(roc_auc_score(yt, p)), "lightgbm_alift": alift(yt, p),
                    "logistic_auc": float(roc_auc_score(yt, q)), "logistic_alift": alift(yt, q),
                    "rounds": int(booster.best_iteration)})
        log.info("test rows %d-%d (%.1f%% yes): LightGBM AUC %.3f ALIFT %.3f | logistic AUC %.3f ALIFT %.3f", a, b - 1,
                 100 * yt.mean(), per[-1]["lightgbm_auc"], per[-1]["lightgbm_alift"], per[-1]["logistic_auc"],
                 per[-1]["logistic_alift"])
        pooled["y"].append(yt)
        pooled["gbm"].append(p)
        pooled["lr"].append(q)
    yy, pg, pl = (np.concatenate(pooled[k]) for k in ("y", "gbm", "lr"))
    return {"windows": per, "pooled": {"lightgbm_auc": float(roc_auc_score(yy, pg)), "lightgbm_alift": alift(yy, pg),
                                       "logistic_auc": float(roc_auc_score(yy, pl)), "logistic_alift": alift(yy, pl),
                                       "test_rows": int(len(yy))}}


def random_split_auc(X: pd.DataFrame, y: np.ndarray, seed: int) -> float:
    aucs = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
        booster = fit_gbm(X.iloc[tr], y[tr], seed)
        aucs.append(roc_auc_score(y[te], booster.predict(X.iloc[te], num_iteration=booster.best_iteration)))
    return float(np.mean(aucs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--window", type=int, default=20_000, help="training window (contacts)")
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not args.data.is_file():
        log.error("Bank Marketing data not found: %s", args.data)
        return 2
    t0 = time.perf_counter()
    X, y = load(args.data)
    log.info("%d contacts, %.2f%% yes; features: %s (duration dropped)", len(X), 100 * y.mean(), ", ".join(X.columns))
    result = rolling(X, y, args.window, args.test_share, args.windows, args.seed)
    result["random_split_5fold_auc_lightgbm"] = random_split_auc(X, y, args.seed)
    result["paper"] = {"source": "Moro, Cortez, Rita (2014), Decision Support Systems 62:22-31, best model (NN) "
                                 "on the richer private data, rolling window", "auc": 0.80, "alift": 0.70}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    p = result["pooled"]
    log.info("pooled out-of-time: LightGBM AUC %.3f ALIFT %.3f; logistic AUC %.3f ALIFT %.3f; random-split AUC "
             "%.3f (paper: AUC 0.80, ALIFT 0.70); wrote %s", p["lightgbm_auc"], p["lightgbm_alift"],
             p["logistic_auc"], p["logistic_alift"], result["random_split_5fold_auc_lightgbm"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
