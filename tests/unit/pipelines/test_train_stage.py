"""The train stage's guards and the optional tuning, on small hand-made inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from models import gbm, tuning
from pipelines import tracking
from tests.conftest import repo_params_raw

REPO = Path(__file__).resolve().parents[3]


def _features(n_customers: int, purchase_rate: float, seed: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-31", "2026-09-30", freq="ME").date
    rows = []
    for d in dates:
        x = rng.normal(size=n_customers)
        matured = d <= pd.Timestamp("2026-06-30").date()
        buy = (rng.random(n_customers) < purchase_rate * np.exp(x) / np.exp(0.5)).astype(float)
        rows.append(pd.DataFrame({
            "customer_id": [f"C{i:07d}" for i in range(n_customers)], "snapshot_date": d, "x": x,
            "income_band": rng.choice(["<10万", "10-20万", "20-50万"], n_customers),
            "purchase_h": buy if matured else np.nan,
            "lapse_h": (rng.random(n_customers) < 0.05).astype(float) if matured else np.nan,
            "premium_h": np.where(buy == 1, 5000.0, 0.0) if matured else np.nan}))
    dictionary = [{"name": "x", "role": "feature", "dtype": "float"},
                  {"name": "income_band", "role": "feature", "dtype": "category"},
                  *({"name": c, "role": "label", "dtype": "float"} for c in ("purchase_h", "lapse_h", "premium_h"))]
    return pd.concat(rows, ignore_index=True), dictionary


def test_train_stage_refuses_too_few_positives_and_writes_nothing(tmp_path: Path) -> None:
    feats, dictionary = _features(200, purchase_rate=0.004)
    (tmp_path / "data/features").mkdir(parents=True)
    feats.to_parquet(tmp_path / "data/features/features.parquet")
    (tmp_path / "data/features/dictionary.json").write_text(json.dumps(dictionary), encoding="utf-8")
    raw = repo_params_raw()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    # as a command, in a process of its own: in the test worker's process MLflow asks any Spark session a Spark
    # test left there for its context, and py4j logged that JVM's closed socket into this stage's output
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipelines.train", "--params", "params.yaml"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    code, err = done.returncode, done.stderr
    assert code == 2 and "Traceback" not in err
    assert "not enough data to train the purchase model" in err and "(need 100)" in err
    assert not (tmp_path / "data/models").exists() and not (tmp_path / "data/reports").exists()


def test_tuning_is_bounded_seeded_and_starts_from_the_defaults() -> None:
    feats, dictionary = _features(300, purchase_rate=0.1, seed=1)
    spec = gbm.feature_spec(feats, dictionary)
    tr, va = feats[feats.snapshot_date < pd.Timestamp("2025-06-30").date()], feats[
        feats.snapshot_date == pd.Timestamp("2025-09-30").date()]
    base = gbm.GBMParams(learning_rate=0.1, num_leaves=15, min_child_samples=50, feature_fraction=1.0,
                         bagging_fraction=1.0, bagging_freq=0, lambda_l2=1.0, max_rounds=200,
                         early_stopping_rounds=10, seed=3, num_threads=1)
    space = tuning.TuningParams(enabled=True, n_trials=4)
    seen: list[int] = []
    args = (gbm.design(tr, spec), tr["purchase_h"].to_numpy(), gbm.design(va, spec), va["purchase_h"].to_numpy(),
            base, "binary", space)
    best, history = tuning.search(*args, on_trial=lambda n, p, v, it: seen.append(n))
    assert len(history) == 4 and seen == [0, 1, 2, 3]
    assert history[0]["num_leaves"] == 15 and history[0]["min_child_samples"] == 50  # trial 0 = the defaults
    assert min(h["value"] for h in history) <= history[0]["value"]
    assert best.learning_rate == base.learning_rate and best.seed == base.seed  # only the searched keys move
    _, again = tuning.search(*args)
    assert [h["value"] for h in again] == [h["value"] for h in history]  # seeded: same trials


def test_a_missing_train_run_falls_back_to_a_new_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    f = tmp_path / "in.txt"
    f.write_text("x")
    with tracking.run("train", {"in": f}) as mlflow:
        first = mlflow.active_run().info.run_id
    with tracking.run("calibrate", {"in": f}, resume=first) as mlflow:
        assert mlflow.active_run().info.run_id == first
    with tracking.run("calibrate", {"in": f}, resume="0" * 32) as mlflow:
        other = mlflow.active_run().info.run_id
        assert other != first
    run = mlflow.get_run(other)
    assert run.data.tags["train_run_id"] == "0" * 32
    assert mlflow.get_run(first).data.tags["calibrate.input.in.sha256"] == tracking.fingerprint(f)
    assert tracking.read_run_id(tmp_path / "absent.json") is None
