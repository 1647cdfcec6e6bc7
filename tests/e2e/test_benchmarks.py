"""The public-data benchmarks run and write what the docs say (slow; read ../shared/datasets, run in CI)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, public_dataset

pytestmark = pytest.mark.slow  # no xdist group: these spread over the workers (each writes only to tmp_path)


def _module(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_coil2000_selects_800_distinct_evaluation_rows(tmp_path: Path) -> None:
    public_dataset("coil2000/ticdata2000.txt")
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


def test_bank_marketing_out_of_time_never_uses_duration(tmp_path: Path) -> None:
    bank = _module("bank_marketing")
    X, y = bank.load(public_dataset("bank_marketing/bank-additional-full.csv"))
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


def test_pipeline_bench_runs_every_stage_on_a_tiled_book_and_measures_each(tmp_path: Path, small_book) -> None:
    """Issue 22: the end-to-end benchmark runs (not timed here): the book tiled with unique ids, every stage of
    dvc.yaml in its own process with its CPU time and peak memory, the floor and the CRM load."""
    bench = _module("pipeline_bench")
    base = tmp_path / "base"
    base.mkdir()
    for name, frame in small_book.tables().items():
        frame.to_parquet(base / f"{name}.parquet", index=False)
    n_base = len(small_book.customers)
    tiled = tmp_path / "tiled"
    assert bench.tile_book(base, n_base + 1, tiled) == 2 * n_base  # two copies
    customers = pd.read_parquet(tiled / "customers.parquet")
    contacts = pd.read_parquet(tiled / "contacts.parquet", columns=["contact_id", "customer_id"])
    base_c, base_k = small_book.customers, small_book.contacts  # the book's injected duplicates stay duplicates
    assert len(customers) == 2 * n_base and customers["customer_id"].nunique() == 2 * base_c["customer_id"].nunique()
    assert len(contacts) == 2 * len(base_k) and contacts["contact_id"].nunique() == 2 * base_k["contact_id"].nunique()
    assert set(contacts["customer_id"]) <= set(customers["customer_id"]) | set(small_book.contacts["customer_id"])
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", str(n_base), "--base", str(base), "--workdir", str(tmp_path / "work"),
                       "--json", str(out), "--markdown", str(tmp_path / "bench.md"),
                       "--set", "train.min_positives.holdout=3", "--set", "train.min_positives.train=20"]) == 0
    (result,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    stages = [r["stage"] for r in result["stages"]]
    assert stages[:-1] == bench.stage_order() and stages[-1].startswith("crm load")
    assert all(r["exit"] == 0 and r["wall_s"] > 0 and r["peak_rss_gib"] > 0 for r in result["stages"])
    assert result["floor"]["exit"] == 0 and result["contacts"] > 0 and result["customers"] == n_base
    table = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "**floor**" in table and "**end to end**" in table and table.count("\n") == len(stages) + 4
    # the scoring benchmark on the workspace the run left: one matrix shared or one per model, the same outputs
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/scoring_matrix_bench.py"), "--workspace",
                           str(tmp_path / "work" / f"ws_{n_base}"), "--rounds", "1"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scoring.predict_each" in done.stdout and re.search(r"^\| [1-9][\d,]* \| ", done.stdout, re.M)
    # the CSV writer's benchmark on that workspace's score file: both float formatters, the same bytes
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/score_csv_bench.py"), "--workspace",
                           str(tmp_path / "work" / f"ws_{n_base}"), "--rows", "5000", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^\| 5,000 \| pipelines/gformat.py \| ", done.stdout, re.M), done.stdout
    (tmp_path / "empty").mkdir()  # a workspace the pipeline never ran in: one line naming what is missing
    (tmp_path / "empty" / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/scoring_matrix_bench.py"), "--workspace",
                           str(tmp_path / "empty")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "features.parquet not found" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/score_csv_bench.py"), "--workspace",
                           str(tmp_path / "empty")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "no data/scores/scores_*.parquet" in done.stderr and "Traceback" not in done.stderr
    # a stage that fails ends the run with what was measured up to it, and says where it stopped
    assert bench.main(["--sizes", str(n_base), "--base", str(base), "--workdir", str(tmp_path / "work2"),
                       "--json", str(out), "--markdown", str(tmp_path / "bench.md"),
                       "--set", "validate.max_reject_share=0.0"]) == 1
    (result,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    order = bench.stage_order()
    assert [r["stage"] for r in result["stages"]] == order[:order.index("validate") + 1]
    assert result["failed"].startswith("stage validate failed (exit 2")
    table = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "**stopped**: stage validate failed" in table and "**end to end** (incomplete)" in table


def test_pipeline_bench_flags_a_stage_that_slowed_against_its_floor_or_grew_in_memory() -> None:
    """Issue 23: the stored compute baseline is compared as ratios to the floor measured in the same run."""
    bench = _module("pipeline_bench")

    def result(train_s: float, floor_s: float, rss: float) -> dict:
        return {"customers": 1000, "floor": {"wall_s": floor_s},
                "stages": [{"stage": "train", "wall_s": train_s, "peak_rss_gib": rss},
                           {"stage": "generate", "wall_s": 0.5, "peak_rss_gib": 0.4}]}

    baseline = {"results": [result(100.0, 1.0, 4.0)]}
    assert bench.regressions(result(200.0, 2.0, 4.0), baseline, 1.5) == []  # a machine twice as slow: no alarm
    assert bench.regressions(result(200.0, 1.0, 4.0), baseline, 1.5) == ["train: 200.0 x floor, baseline 100.0"]
    assert bench.regressions(result(100.0, 1.0, 7.0), baseline, 1.5) == [
        "train: peak RSS 7.00 GiB, baseline 4.00"]
    assert bench.regressions({**result(900.0, 1.0, 9.0), "customers": 5}, baseline, 1.5) == []  # other size


def test_monthly_features_bench_reruns_incrementally_and_checks_the_tables_equal(tmp_path: Path) -> None:
    """Issue 22: the monthly re-run benchmark runs (not timed here): last month's export derived from the book,
    the stage as of last month, then the re-run with its cache and the full recompute, whose tables must agree."""
    bench = _module("monthly_features_bench")
    out = tmp_path / "monthly.md"
    assert bench.main(["--size", "20000", "--repeats", "1", "--workdir", str(tmp_path), "--markdown", str(out)]) == 0
    table = out.read_text(encoding="utf-8")
    assert "monthly re-run" in table and "full recompute" in table and "both tables equal: True" in table
    log = (tmp_path / "monthly_20000" / "stages.log").read_text(encoding="utf-8")
    reads = [int(n) for n in re.findall(r"(\d+) of \d+ snapshots read back", log)]
    assert reads[0] == 0 and reads[1] > 0  # last month filled the cache, this month read it back
    assert "fingerprinted the validated tables here" not in log  # both months used validate's fingerprints


def test_timed_stage_runs_the_interpreter_and_logs_start_end_and_exit_code(tmp_path: Path) -> None:
    """benchmarks/timed_stage.sh stands in for the interpreter pipelines/stage.sh starts: it must pass the arguments
    and the exit code through, and log both ends of the process."""
    log = tmp_path / "stages.log"
    env = {"PATH": "/usr/bin:/bin", "STAGE_TIMES": str(log), "TIMED_PYTHON": sys.executable}
    script = str(REPO / "benchmarks" / "timed_stage.sh")
    ok = subprocess.run([script, "-c", "print('hello')"], env=env, capture_output=True, text=True)
    failed = subprocess.run([script, "-c", "import sys; sys.exit(3)"], env=env, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.strip(), failed.returncode) == (0, "hello", 3)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [row[0] for row in lines] == ["start", "end", "start", "end"]
    assert [lines[1][2], lines[3][2]] == ["0", "3"]
    assert float(lines[0][1]) <= float(lines[1][1]) <= float(lines[2][1])
    missing = subprocess.run([script, "-c", "pass"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert missing.returncode != 0 and "STAGE_TIMES" in missing.stderr
