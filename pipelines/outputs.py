"""Read the pipeline's outputs from notebooks and scripts, the way the stages write them.

Run from the repository root (or pass ``root``). Every function names the stage to run when its file is
missing, instead of a bare FileNotFoundError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import paths
from pipelines.errors import InputError, require

TABLES = ("customers", "policies", "claims", "contacts")


def _need(path: Path, stage: str) -> Path:
    require([path], f"run `dvc repro {stage}` first")
    return path


def load_book(root: str | Path = ".") -> dict[str, pd.DataFrame]:
    """The validated tables (personal fields already dropped)."""
    base = Path(root) / paths.INTERIM
    tables = {}
    for t in TABLES:
        path = base / f"{t}.parquet"
        if t == "claims" and not path.exists():
            continue  # an optional table the source did not have
        tables[t] = pd.read_parquet(_need(path, "validate"))
    return tables


def load_features(root: str | Path = ".", snapshot: str | None = None) -> pd.DataFrame:
    """The feature table; one snapshot when ``snapshot`` (YYYY-MM-DD, or 'latest') is given."""
    df = pd.read_parquet(_need(Path(root) / paths.FEATURES, "features"))
    if snapshot is None:
        return df
    dates = pd.to_datetime(df["snapshot_date"])
    day = dates.max() if snapshot == "latest" else pd.Timestamp(snapshot)
    return df[dates == day].reset_index(drop=True)


def dictionary(root: str | Path = ".") -> dict[str, dict[str, Any]]:
    """Feature name -> family, type, window, English and Chinese description."""
    rows = json.loads(_need(Path(root) / paths.DICTIONARY, "features").read_text(encoding="utf-8"))
    return {r["name"]: r for r in rows}


def report(name: str, root: str | Path = ".") -> dict[str, Any]:
    """One of the stages' detailed reports: validation, features, train, calibration, segments, truth_check."""
    stage = {"validation": "validate", "segments": "segment"}.get(name, name)
    return json.loads(_need(Path(root) / paths.report(name), stage).read_text(encoding="utf-8"))


def plot_data(name: str, root: str | Path = ".") -> pd.DataFrame:
    """A DVC plot's data, e.g. calibration_purchase, gains_lapse, importance_value, tiers."""
    return pd.read_csv(_need(Path(root) / paths.plot(name), "calibrate"))


def segments(root: str | Path = ".") -> pd.DataFrame:
    return pd.read_parquet(_need(Path(root) / paths.SEGMENTS, "segment"))


def backtest(name: str, root: str | Path = ".") -> pd.DataFrame:
    """A backtest table: priority_tier, rule_tier, ml_quadrant, rule_quadrant, value_tier, closeness,
    behaviour, crosstab_rule_vs_ml."""
    return pd.read_csv(_need(Path(root) / paths.BACKTEST / f"{name}.csv", "segment"))


def scores(root: str | Path = ".", as_of: str | None = None) -> pd.DataFrame:
    """The delivered score file of ``as_of`` (default: the latest in data/scores)."""
    folder = _need(Path(root) / paths.SCORES, "export")
    files = sorted(folder.glob("scores_*.parquet"))
    if as_of is not None:
        files = [f for f in files if f.stem == f"scores_{as_of}"]
    if not files:
        raise InputError(f"no score file{' for ' + as_of if as_of else ''} in {folder}: run `dvc repro export`")
    return pd.read_parquet(files[-1])
