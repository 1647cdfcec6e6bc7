"""Every file and folder the stages read or write, named once (relative to the repository root).

dvc.yaml names the same paths as the stages' deps and outs; tests/project/test_paths.py checks the two agree.
Two kinds of place:

* **DVC outputs** (everything below except ``TRACKING``): a function of the code, ``params.yaml`` and the
  input data, byte for byte, so a fresh clone's ``make run`` reproduces the committed ``dvc.lock``. They
  hold no wall-clock time and no MLflow identifier.
* **Tracking state** (``TRACKING``): the MLflow run the stages add to and the registered model versions of
  the latest run. It describes the tracking store, not the data, so DVC does not track it.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")

# generate (synthetic book only)
SYNTHETIC_BOOK = DATA / "synthetic" / "book"
TRUTH = DATA / "synthetic" / "truth.parquet"

# validate
INTERIM = DATA / "interim"
QUARANTINE = INTERIM / "quarantine"
CUSTOMERS = INTERIM / "customers.parquet"
CONTACTS = INTERIM / "contacts.parquet"
TABULAR = INTERIM / "tabular.parquet"
FINGERPRINTS = INTERIM / "fingerprints.json"  # validate's day sums of the tables it wrote (pipelines.interim)
TABULAR_DICTIONARY = INTERIM / "tabular_dictionary.json"
VALIDATE_SCRATCH = DATA / "scratch" / "validate"  # a chunked table's spill files; removed when the stage ends

# features
FEATURE_DIR = DATA / "features"
FEATURES = FEATURE_DIR / "features.parquet"
FEATURE_CACHE = DATA / "cache" / "features"  # not a DVC output: the stage's result is the same without it
DICTIONARY = FEATURE_DIR / "dictionary.json"

# train, calibrate, uplift
MODELS = DATA / "models"
MODEL_SCORES = MODELS / "scores.parquet"
IMPORTANCE = MODELS / "importance.json"
CALIBRATORS = DATA / "calibrators"
UPLIFT = DATA / "uplift"

# register
REGISTERED = DATA / "registry" / "models.json"

# segment
SEGMENT_DIR = DATA / "segments"
SEGMENTS = SEGMENT_DIR / "segments.parquet"
CUTPOINTS = SEGMENT_DIR / "cutpoints.json"
BASELINE_PLANS = SEGMENT_DIR / "baseline_plans.parquet"
PLAN_VOLUME = SEGMENT_DIR / "plan_volume.csv"
BACKTEST = SEGMENT_DIR / "backtest"

# export
SCORES = DATA / "scores"

# reports: the detail of each stage (DVC outs), and the small flat headline metrics DVC compares
REPORTS = DATA / "reports"
METRICS = DATA / "metrics"
PLOTS = DATA / "plots"
REPORT_HTML = REPORTS / "report.html"
FIGURES = REPORTS / "figures"


def report(stage: str) -> Path:
    """A stage's detailed JSON report (``validation``, ``features``, ``train``, ``calibration``, ...)."""
    return REPORTS / f"{stage}.json"


def metrics(stage: str) -> Path:
    """A stage's headline metrics: a handful of flat numbers that ``dvc metrics diff`` and ``dvc exp show``
    compare."""
    return METRICS / f"{stage}.json"


def plot(name: str) -> Path:
    return PLOTS / f"{name}.csv"


# tracking state (not DVC-tracked): the train stage's MLflow run, the latest registered versions
TRACKING = DATA / "tracking"
RUN_FILE = TRACKING / "run.json"
REGISTRY = TRACKING / "registry.json"
