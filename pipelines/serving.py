"""The registered models' MLflow definition: native LightGBM booster + JSON calibrator behind ``predict``.

Logged as an MLflow "model from code": this file is the model definition and the artifacts are the
native files (``model.txt``, ``meta.json``, the calibrator JSON), so nothing of ours is pickled and a
model loads on any machine with the pinned packages. ``predict`` takes the feature table's columns
(categoricals as plain strings, as in ``data/features/features.parquet``) and returns, per row, the
calibrated probability (purchase, lapse) or the expected annual premium if bought (value).

Keep this module free of imports from ``pipelines``: only ``models`` is shipped with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class CalibratedBooster(PythonModel):
    """Apply the training-time design (fixed categories), the booster and the calibrator."""

    def load_context(self, context: Any) -> None:
        from models import gbm
        from models.lgbm import lgb

        art = context.artifacts
        self.booster = lgb.Booster(model_file=art["model"])
        meta = json.loads(Path(art["meta"]).read_text(encoding="utf-8"))
        self.spec = gbm.FeatureSpec.from_dict(meta["features"])
        self.transform = meta.get("target_transform")
        self.calibrator = (json.loads(Path(art["calibrator"]).read_text(encoding="utf-8"))
                           if "calibrator" in art else None)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        from models import gbm

        return gbm.predict_output(self.booster, self.spec, pd.DataFrame(model_input), self.transform, self.calibrator)


mlflow.models.set_model(CalibratedBooster())
