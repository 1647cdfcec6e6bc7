"""A tabular source through the runner and the stages, in process: merging, paths, as-of, rejects."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines import run_source
from pipelines.errors import ConfigError, UserError
from pipelines.params import parse_params
from tests.builders import bank_rows, tabular_spec
from tests.conftest import REPO, repo_params_raw


def test_params_need_the_tabular_section_for_a_tabular_source() -> None:
    raw = repo_params_raw()
    raw["validate"]["source"]["kind"] = "tabular"
    with pytest.raises(ConfigError, match="kind: tabular needs a `tabular` section"):
        parse_params(raw)


def test_runner_merges_sources_over_params_and_checks_them(tmp_path: Path) -> None:
    assert run_source.deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == \
        {"a": {"b": 1, "c": 3}, "d": [2]}
    stages = run_source.stage_order()
    assert stages == list(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
    merged, run = run_source.load_source(REPO / "benchmarks/sources/coil2000.yaml", REPO / "params.yaml")
    assert run["top"]["n"] == 800 and Path(merged["validate"]["source"]["dir"]).is_absolute()
    assert merged["features"] == repo_params_raw()["features"]  # untouched sections come from params.yaml
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {gbm: {num_leavs: 4}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="num_leavs: unknown key"):
        run_source.load_source(bad, REPO / "params.yaml")
    bad.write_text("run: {tops: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        run_source.load_source(bad, REPO / "params.yaml")


def test_a_source_file_resolves_its_dir_against_its_own_folder_and_must_name_its_as_of(tmp_path: Path) -> None:
    """Issue 20: `dir: data` in sources/churn.yaml means sources/data, wherever the command runs; a missing as-of
    is an error, never the synthetic book's date; `as_of: today` is allowed."""
    folder = tmp_path / "sources"
    (folder / "data").mkdir(parents=True)
    bank_rows().to_csv(folder / "data/x.csv", index=False)
    spec = {k: v for k, v in tabular_spec().model_dump().items() if v not in (None, [], {})}
    body = {"validate": {"source": {"kind": "tabular", "dir": "data", "format": "csv", "tabular": spec}}}
    src = folder / "churn.yaml"
    src.write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"set book.as_of"):
        run_source.load_source(src, REPO / "params.yaml")
    src.write_text(yaml.safe_dump({"book": {"as_of": "today"}, **body}), encoding="utf-8")
    merged, _ = run_source.load_source(src, REPO / "params.yaml")
    assert Path(merged["validate"]["source"]["dir"]) == (folder / "data").resolve()
    assert merged["book"]["as_of"] == dt.date.today().isoformat()


def test_validate_stage_stops_on_too_many_bad_targets_naming_file_column_rule_and_rows(tmp_path: Path, monkeypatch,
                                                                                      capsys) -> None:
    from pipelines import validate

    raw = bank_rows(100)
    raw.loc[[0, 1, 2, 3], "y"] = "?"
    (tmp_path / "src").mkdir()
    raw.to_csv(tmp_path / "src/bank.csv", sep=";", index=False)
    params = repo_params_raw()
    params["validate"] = {"max_reject_share": 0.02, "source": {
        "kind": "tabular", "dir": "src", "format": "csv", "encoding": "utf-8", "delimiter": ";",
        "tabular": tabular_spec(file="bank.csv").model_dump()}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert validate.cli(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "table 'tabular' (src/bank.csv): 4 of 100 rows rejected" in err
    assert "column 'y' rule 'allowed_values': 4 rows (e.g. 1, 2, 3, 4)" in err
    assert not (tmp_path / "data").exists()  # nothing written
    params["validate"]["max_reject_share"] = 0.05
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert validate.cli(["--params", "params.yaml"]) == 0
    report = json.loads((tmp_path / "data/reports/validation.json").read_text(encoding="utf-8"))["tables"]["tabular"]
    assert report["input"] == 100 and report["accepted"] == 96 and report["quarantined"] == 4 and report["reconciled"]
    assert "phone" not in pd.read_parquet(tmp_path / "data/interim/tabular.parquet")


def test_retraining_refuses_a_source_without_the_full_model_set(tmp_path: Path, monkeypatch) -> None:
    from pipelines import retrain

    merged, _ = run_source.load_source(REPO / "benchmarks/sources/coil2000.yaml", REPO / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="retraining gates compare the purchase, lapse and value models"):
        retrain.cycle(tmp_path / "params.yaml", dt.date(2000, 7, 1), tmp_path / "log.txt")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
