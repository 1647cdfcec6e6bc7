"""``models.lgbm``: LightGBM's core without its scikit-learn estimators (and their second of imports)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (this test process has long imported scikit-learn) and return stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_stages_that_only_predict_load_no_scikit_learn() -> None:
    """register, segment and export load models and predict; importing them used to load scikit-learn and SciPy's
    statistics through LightGBM (about 1 s a process)."""
    out = _fresh("""
        import sys
        import pipelines.register, pipelines.segment, pipelines.export, pipelines.scoring
        print(",".join(m for m in ("sklearn", "scipy.stats") if m in sys.modules))
    """)
    assert out == "", f"loaded on import: {out}"


def test_the_core_trains_and_predicts_and_scikit_learn_still_imports() -> None:
    """The hidden scikit-learn is only hidden for LightGBM's own import: the core works, scikit-learn imports
    normally afterwards, and the model equals one trained by a LightGBM that loaded its scikit-learn API."""
    code = """
        import sys
        import numpy as np
        {first}
        from models.lgbm import lgb
        rng = np.random.default_rng(0)
        X = rng.normal(size=(2000, 5)); y = (X[:, 0] + rng.normal(size=2000) > 0).astype(int)
        params = {{"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1, "deterministic": True}}
        booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=20)
        from sklearn.metrics import roc_auc_score
        auc = round(roc_auc_score(y, booster.predict(X)), 12)
        print("sklearn" in sys.modules, auc, booster.model_to_string().count("Tree="))
    """
    hidden = _fresh(code.format(first=""))
    visible = _fresh(code.format(first="import sklearn"))
    assert hidden.split()[0] == "True"  # imported after LightGBM, as usual
    assert hidden == visible
    assert hidden.split()[2] == "20"
