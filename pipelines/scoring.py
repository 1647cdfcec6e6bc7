"""Load the trained model set (native LightGBM text models, meta.json, JSON calibrators) and score snapshots."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.capabilities import Capabilities
from models import gbm
from pipelines import paths
from pipelines.errors import InputError

MODELS, CALIBRATORS, UPLIFT = paths.MODELS, paths.CALIBRATORS, paths.UPLIFT


@dataclass(frozen=True)
class LoadedModel:
    booster: lgb.Booster
    spec: gbm.FeatureSpec
    meta: dict[str, Any]
    calibrator: dict[str, Any] | None

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return gbm.predict_output(self.booster, self.spec, df, self.meta.get("target_transform"), self.calibrator)


def load_model(name: str, models: Path = MODELS, calibrators: Path = CALIBRATORS) -> LoadedModel:
    files = [models / name / "model.txt", models / name / "meta.json"]
    if name != "value":
        files.append(calibrators / f"{name}.json")
    for f in files:
        if not f.is_file():
            raise InputError(f"{f} not found: run the train and calibrate stages first (dvc repro calibrate)")
    meta = json.loads(files[1].read_text(encoding="utf-8"))
    cal = json.loads(files[2].read_text(encoding="utf-8")) if name != "value" else None
    return LoadedModel(lgb.Booster(model_file=str(files[0])), gbm.FeatureSpec.from_dict(meta["features"]), meta, cal)


def scoring_rows(feats: pd.DataFrame, as_of: dt.date, caps: Capabilities) -> pd.DataFrame:
    """The rows to score at the as-of date: the as-of snapshot of a book; of a tabular source its score file's
    rows, or without one every row of the file (each with its ``role``: train, valid, calib or test)."""
    if caps.snapshots:
        return feats[pd.to_datetime(feats["snapshot_date"]) == pd.Timestamp(as_of)]
    if (feats["role"] == "score").any():
        return feats[feats["role"] == "score"]
    return feats[feats["role"].isin(["train", "valid", "calib", "test"])]


def score(df: pd.DataFrame, models: Path = MODELS, calibrators: Path = CALIBRATORS) -> pd.DataFrame:
    """Calibrated p_purchase and p_lapse, and expected premium if bought, for each row of ``df``.

    p_lapse is 0 for customers with no policy in force: there is nothing to lapse.
    """
    out = pd.DataFrame(index=df.index)
    out["p_purchase"] = load_model("purchase", models, calibrators).predict(df)
    holder = df["n_inforce"].fillna(0).to_numpy(float) > 0
    out["p_lapse"] = np.where(holder, load_model("lapse", models, calibrators).predict(df), 0.0)
    out["expected_premium"] = np.maximum(load_model("value", models, calibrators).predict(df), 0.0)
    return out



def load_effect_models(folder: Path = UPLIFT) -> dict[str, Any] | None:
    """The uplift stage's effect learners (purchase, lapse), or None when the stage skipped (no history)."""
    from models import uplift

    out: dict[str, Any] = {}
    for outcome in uplift.OUTCOMES:
        model, meta = folder / outcome / "model.txt", folder / outcome / "meta.json"
        if not (model.is_file() and meta.is_file()):
            continue  # an experiment source has a purchase (target) learner only
        out[outcome] = uplift.EffectModel.from_meta(lgb.Booster(model_file=str(model)),
                                                    json.loads(meta.read_text(encoding="utf-8")))
    return out if "purchase" in out else None
