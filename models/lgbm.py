"""LightGBM's core (``Dataset``, ``Booster``, ``train``), imported without its scikit-learn estimators.

``import lightgbm`` imports scikit-learn, and through it SciPy's statistics, to define ``LGBMClassifier`` and
its kin, which this project never uses: about 1 s of every stage that only loads a model and predicts
(uplift, register, segment, export, truth_check), a stage being a process of its own. Hiding scikit-learn for
the duration of that one import (``None`` in ``sys.modules`` makes ``import sklearn`` fail, which LightGBM
handles by leaving its scikit-learn API out) keeps LightGBM's core as it is; scikit-learn itself imports
normally afterwards. If scikit-learn is already loaded (train, calibrate) nothing is hidden.

Import LightGBM through this module (``from models.lgbm import lgb``): the first import in a process decides.
"""

from __future__ import annotations

import sys

_hide = "sklearn" not in sys.modules and "lightgbm" not in sys.modules
if _hide:
    sys.modules["sklearn"] = None  # type: ignore[assignment]
try:
    import lightgbm as lgb
finally:
    if _hide:
        del sys.modules["sklearn"]

__all__ = ["lgb"]
