"""The public-data benchmarks run and write what the docs say (slow; read ../shared/datasets, run in CI)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

DATASETS = REPO.parent / "shared/datasets"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("benchmarks")]


def _module(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.skipif(not (DATASETS / "coil2000/ticdata2000.txt").is_file(), reason="CoIL 2000 data not present")
def test_coil2000_selects_800_distinct_evaluation_rows(tmp_path: Path) -> None:
    coil = _module("coil2000")
    out = tmp_path / "coil2000_top800.csv"
    assert coil.main(["--out", str(out), "--repeats", "1"]) == 0
    top = pd.read_csv(out)
    assert list(top.columns) == ["row", "score"] and len(top) == 800 and top["row"].is_unique
    assert top["row"].between(1, 4000).all() and top["score"].is_monotonic_decreasing
    summary = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert summary["chosen"] == summary["cv"][0]["method"]
    assert summary["cv"][0]["cv_hits_per_800"] > 48 * 1.5  # far better than random selection (about 48)
    pipeline = summary["pipeline"]  # the pipeline's own method (cross-fitted), on the same folds
    assert pipeline["method"].startswith("the pipeline") and pipeline["folds"] == summary["cv"][0]["folds"]
    assert pipeline["cv_hits_per_800"] > 48 * 1.5 and pipeline["versus_chosen"]["standard_error"] > 0


@pytest.mark.skipif(not (DATASETS / "bank_marketing/bank-additional-full.csv").is_file(),
                    reason="Bank Marketing data not present")
def test_bank_marketing_out_of_time_never_uses_duration(tmp_path: Path) -> None:
    bank = _module("bank_marketing")
    X, y = bank.load(DATASETS / "bank_marketing/bank-additional-full.csv")
    assert "duration" not in X.columns and len(X) == len(y) == 41188
    out = tmp_path / "bank.json"
    assert bank.main(["--out", str(out), "--windows", "2"]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert len(r["windows"]) == 2 and 0.5 < r["pooled"]["lightgbm_auc"] < 1
    assert r["random_split_5fold_auc_lightgbm"] > r["pooled"]["lightgbm_auc"] - 0.2


def test_features_bench_measures_a_small_book_with_feature_overrides(tmp_path: Path) -> None:
    """The features benchmark runs end to end (book, DuckDB and pandas children) and takes --features."""
    import subprocess
    import sys

    cmd = [sys.executable, str(REPO / "benchmarks/features_bench.py"), "--sizes", "3000", "--pandas-max", "3000",
           "--train-snapshots", "1", "--workdir", str(tmp_path), "--markdown", str(tmp_path / "t.md"),
           "--features", '{"windows_days": [30, 365], "channels": ["phone", "sms"]}']
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = (tmp_path / "t.md").read_text(encoding="utf-8").splitlines()[-1].split("|")
    assert row[1].strip() == "3,000" and float(row[3]) > 0 and row[6].strip() != "not run"
    bad = subprocess.run([*cmd[:2], "--features", '{"windows_days": [365, 30]}'], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "--features" in bad.stderr and "strictly increasing" in bad.stderr
