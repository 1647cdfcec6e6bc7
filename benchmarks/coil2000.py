"""CoIL Challenge 2000: pick the 800 most likely caravan-policy buyers among the 4,000 evaluation customers.

Trains on ``ticdata2000.txt`` only. The method is chosen by repeated stratified cross-validation on that
file, using the challenge's own yardstick: buyers found in the top 20% (800 of 4,000). The evaluation labels
are held back, as they were from the contestants, so this script never reads them.

    .venv/bin/python benchmarks/coil2000.py            # writes data/benchmarks/coil2000_cv_top800.csv (+ .json)

The data is for non-commercial research and education only: it is read from ../shared/datasets, never
copied into this repository.
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.intake.tabular import crossfit_folds

log = logging.getLogger("benchmarks.coil2000")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/datasets/coil2000"
SOURCE = REPO / "benchmarks/sources/coil2000.yaml"
OUT = Path("data/benchmarks/coil2000_cv_top800.csv")
CATEGORICAL = ["MOSTYPE", "MOSHOOFD"]  # customer subtype / main type: codes, not ordinal
TOP_SHARE = 0.2  # 800 of 4,000


def columns(folder: Path) -> list[str]:
    names = []
    for line in (folder / "dictionary.txt").read_text(encoding="cp1252").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) == len(names) + 1 and len(names) < 86:
            names.append(parts[1])  # the attribute list 1..86; the value tables (L0-L4) that follow are skipped
    if len(names) != 86:
        raise ValueError(f"expected 86 attribute names in {folder / 'dictionary.txt'}, found {len(names)}")
    return names


def load(folder: Path) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    names = columns(folder)
    train = pd.read_csv(folder / "ticdata2000.txt", sep="\t", header=None, names=names)
    evaluation = pd.read_csv(folder / "ticeval2000.txt", sep="\t", header=None, names=names[:-1])
    return train[names[:-1]], train["CARAVAN"], evaluation


def hits_at(y: np.ndarray, score: np.ndarray, share: float = TOP_SHARE) -> float:
    """Positives among the top ``share`` of rows by score (ties broken by row order)."""
    k = int(round(share * len(y)))
    return float(np.asarray(y)[np.argsort(-score, kind="stable")[:k]].sum())


def candidates(seed: int) -> dict[str, Any]:
    """The methods compared: regularised logistic regressions and small, slow LightGBM models."""
    def logistic(c: float) -> Any:
        def make(X: pd.DataFrame) -> Pipeline:
            numeric = [col for col in X.columns if col not in CATEGORICAL]
            pre = ColumnTransformer([("num", StandardScaler(), numeric),
                                     ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
            return Pipeline([("pre", pre), ("lr", LogisticRegression(C=c, max_iter=2000))])
        return make

    def gbm(leaves: int, rounds: int, min_child: int) -> Any:
        params = {"objective": "binary", "learning_rate": 0.02, "num_leaves": leaves, "min_child_samples": min_child,
                  "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 10.0,
                  "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1}

        class Model:
            def fit(self, X: pd.DataFrame, y: np.ndarray) -> Model:
                ds = lgb.Dataset(X.astype({c: "category" for c in CATEGORICAL}), label=y)
                self.booster = lgb.train(params, ds, num_boost_round=rounds)
                return self

            def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
                p = self.booster.predict(X.astype({c: "category" for c in CATEGORICAL}))
                return np.column_stack([1 - p, p])

        return lambda X: Model()

    return {"logistic C=0.01": logistic(0.01), "logistic C=0.1": logistic(0.1),
            "lightgbm 4 leaves x 300": gbm(4, 300, 50), "lightgbm 8 leaves x 200": gbm(8, 200, 100),
            "lightgbm 4 leaves x 600": gbm(4, 600, 50)}


PIPELINE = "the pipeline (cross-fitted LightGBM, coil2000.yaml)"


def pipeline_method(seed: int) -> Any:
    """What `make coil2000` does with a training file, as a CV candidate: the source's LightGBM settings,
    cross-fitted (models/crossfit.py) with the source's folds, a final model on every row. Calibration is left
    out: it is monotone, so it does not change which 800 rows are chosen."""
    from models import crossfit
    from models import gbm as pipeline_gbm
    from pipelines.params import parse_params
    from pipelines.run_source import load_source

    merged, _ = load_source(SOURCE, REPO / "params.yaml")
    params = parse_params(merged, SOURCE)
    tab = params.validate_.source.tabular
    assert tab is not None

    class Model:
        def fit(self, X: pd.DataFrame, y: np.ndarray) -> Model:
            frame = X.astype({c: str for c in CATEGORICAL})
            self.spec = pipeline_gbm.FeatureSpec([c for c in X.columns if c not in CATEGORICAL],
                                                 {c: sorted(frame[c].unique()) for c in CATEGORICAL})
            keys = pd.Series([f"r{i:07d}" for i in X.index + 1])  # the pipeline's row keys
            fold = crossfit_folds(keys, np.asarray(y), tab.split.folds, tab.seed)
            self.cf = crossfit.cross_fit(frame, np.asarray(y, float), fold, self.spec, params.train.gbm,
                                         params.train.lr_max_rows)
            return self

        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            frame = X.astype({c: str for c in CATEGORICAL})
            p = pipeline_gbm.predict(self.cf.booster, pipeline_gbm.design(frame, self.spec))
            return np.column_stack([1 - p, p])

    del seed  # the source's own seeds apply, as in the pipeline
    return lambda X: Model()


def cross_validate(X: pd.DataFrame, y: pd.Series, seed: int, repeats: int,
                   methods: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Hits in the top 20% of each held-out fold, scaled to 800 of 4,000, per method (mean and s.d.), and each
    method's per-fold figures (the same folds for every method, so differences can be paired)."""
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=seed)
    rows, per_fold = [], {}
    for name, make in methods.items():
        scores = []
        for tr, te in cv.split(X, y):
            model = make(X.iloc[tr]).fit(X.iloc[tr], y.iloc[tr].to_numpy())
            p = model.predict_proba(X.iloc[te])[:, 1]
            scores.append(hits_at(y.iloc[te].to_numpy(), p) * 800 / (TOP_SHARE * len(te)))
        per_fold[name] = np.array(scores)
        rows.append({"method": name, "cv_hits_per_800": float(np.mean(scores)), "sd": float(np.std(scores)),
                     "folds": len(scores)})
        log.info("%-26s %.1f buyers per 800 (s.d. %.1f over %d folds)", name, rows[-1]["cv_hits_per_800"],
                 rows[-1]["sd"], len(scores))
    table = pd.DataFrame(rows).sort_values("cv_hits_per_800", ascending=False, kind="stable").reset_index(drop=True)
    return table, per_fold


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean per-fold difference a - b and its standard error (same folds: the fold-to-fold noise cancels)."""
    d = np.asarray(a) - np.asarray(b)
    return {"mean_difference": float(d.mean()), "standard_error": float(d.std(ddof=1) / np.sqrt(len(d)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--repeats", type=int, default=4, help="repeats of the 5-fold cross-validation")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not (args.data / "ticdata2000.txt").is_file():
        log.error("CoIL 2000 data not found in %s (expected ticdata2000.txt, ticeval2000.txt, dictionary.txt)",
                  args.data)
        return 2
    t0 = time.perf_counter()
    X, y, evaluation = load(args.data)
    log.info("training file: %d customers, %d caravan owners (%.2f%%); evaluation file: %d customers",
             len(X), int(y.sum()), 100 * y.mean(), len(evaluation))
    table, per_fold = cross_validate(X, y, args.seed, args.repeats, candidates(args.seed))
    best = str(table.iloc[0]["method"])
    pipeline_table, pipeline_folds = cross_validate(X, y, args.seed, args.repeats, {PIPELINE: pipeline_method(0)})
    versus = paired(pipeline_folds[PIPELINE], per_fold[best])
    log.info("the pipeline's method: %.1f buyers per 800; against the script's choice (%s): %+.1f (s.e. %.1f)",
             pipeline_table.iloc[0]["cv_hits_per_800"], best, versus["mean_difference"], versus["standard_error"])
    model = candidates(args.seed)[best](X).fit(X, y.to_numpy())
    score = model.predict_proba(evaluation)[:, 1]
    order = np.argsort(-score, kind="stable")[:800]
    top = pd.DataFrame({"row": order + 1, "score": score[order]})  # 1-based, file order of ticeval2000.txt
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    top.to_csv(tmp, index=False, float_format="%.6f")
    tmp.replace(args.out)
    summary = {"chosen": best, "selection": "repeated stratified 5-fold CV on ticdata2000.txt, buyers in the "
               "top 20% scaled to 800", "cv": table.to_dict("records"),
               "pipeline": pipeline_table.to_dict("records")[0] | {"versus_chosen": versus}, "rows_selected": len(top),
               "seconds": round(time.perf_counter() - t0, 1)}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("chose %s (CV %.1f buyers per 800); wrote %s (%d rows) in %.0fs", best,
             table.iloc[0]["cv_hits_per_800"], args.out, len(top), summary["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
