"""Tabular sources (one file whose columns are the features): validation, splits, capabilities, the runner."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features import capabilities as cap
from features.tabular import SplitShares, TabularError, TabularSpec, prepare, row_of_score_key, score_key
from pipelines import run_source, score_file
from pipelines.errors import ConfigError, UserError
from pipelines.params import parse_params
from tests.conftest import REPO, repo_params_raw

DATASETS = REPO.parent / "shared/datasets"
AS_OF = dt.date(2010, 12, 1)


def _spec(**over: object) -> TabularSpec:
    base: dict[str, object] = {"file": "x.csv", "target": "y", "positive": ["yes"], "negative": ["no"],
                               "drop": ["duration"], "missing": {"pdays": ["999"]}, "time_order": "file",
                               "month_column": "month", "start_year": 2008,
                               "split": {"valid": 0.1, "calib": 0.1, "test": 0.2}}
    return TabularSpec.model_validate(base | over)


def _raw(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    months = np.repeat(["nov", "dec", "mar", "apr"], n // 4)  # Nov 2008 .. Apr 2009: the year rolls over
    return pd.DataFrame({"age": rng.integers(18, 80, n).astype(str), "job": rng.choice(["a", "b"], n),
                         "month": months, "pdays": np.where(rng.random(n) < 0.7, "999", "5"),
                         "duration": rng.integers(1, 900, n).astype(str), "phone": "13800000000",
                         "y": rng.choice(["yes", "no"], n)})


def test_prepare_orders_roles_in_time_and_never_uses_leaky_or_personal_columns() -> None:
    raw = _raw()
    prep = prepare(raw, _spec(drop=["duration", "phone"]), AS_OF, "x.csv")
    f = prep.features
    assert list(f["role"]) == sorted(f["role"], key=["train", "valid", "calib", "test"].index)  # earliest rows train
    assert f["role"].value_counts().to_dict() == {"train": 120, "test": 40, "valid": 20, "calib": 20}
    assert f["snapshot_date"].iloc[0] == dt.date(2008, 11, 1) and f["snapshot_date"].iloc[-1] == dt.date(2009, 4, 1)
    names = {d["name"] for d in prep.dictionary if d["role"] == "feature"}
    assert names == {"age", "job", "month", "pdays"}  # no duration (leaky), phone (personal) or target
    assert f["pdays"].isna().sum() == int((raw["pdays"] == "999").sum())  # declared missing code -> null
    assert f["age"].dtype == "float64" and {d["name"]: d["dtype"] for d in prep.dictionary}["job"] == "category"
    assert f["purchase_h"].tolist() == (raw["y"] == "yes").astype(float).tolist()


def test_unknown_target_values_are_quarantined_with_rule_column_and_rows() -> None:
    raw = _raw()
    raw.loc[[3, 7, 11], "y"] = "maybe"
    prep = prepare(raw, _spec(), AS_OF, "x.csv")
    assert prep.rejects == {("allowed_values", "y"): 3}
    assert prep.quarantine["row"].tolist() == [4, 8, 12] and len(prep.features) == len(raw) - 3
    assert "phone" not in prep.quarantine and "duration" not in prep.quarantine  # personal / dropped: never kept
    assert prep.n_input == len(prep.features) + len(prep.quarantine)


def test_hashed_split_is_stable_whatever_the_row_order() -> None:
    raw = _raw(400).assign(cid=[f"c{i}" for i in range(400)])
    split = {"valid": 0.1, "calib": 0.1, "test": 0.2, "crossfit_max_rows": 0}  # a large file: split, not cross-fit
    spec = _spec(time_order="none", month_column=None, start_year=None, id_column="cid", split=split)
    a = prepare(raw, spec, AS_OF, "x.csv").features.set_index("customer_id")["role"]
    b = prepare(raw.sample(frac=1, random_state=1), spec, AS_OF, "x.csv").features.set_index("customer_id")["role"]
    assert a.sort_index().equals(b.sort_index())
    shares = a.value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.07 and abs(shares["train"] - 0.6) < 0.08


def test_a_small_file_without_time_order_is_cross_fitted_in_stable_stratified_folds() -> None:
    raw = _raw(400).assign(cid=[f"c{i}" for i in range(400)])
    spec = _spec(time_order="none", month_column=None, start_year=None, id_column="cid")
    f = prepare(raw, spec, AS_OF, "x.csv").features
    assert (f["role"] == "train").all() and set(f["fold"]) == {0, 1, 2, 3, 4}  # every row trains the final model
    per_fold = f.groupby("fold")["purchase_h"].agg(["size", "sum"])
    assert per_fold["size"].max() - per_fold["size"].min() <= 2 and per_fold["sum"].max() - per_fold["sum"].min() <= 1
    g = prepare(raw.sample(frac=1, random_state=1), spec, AS_OF, "x.csv").features
    assert f.set_index("customer_id")["fold"].sort_index().equals(g.set_index("customer_id")["fold"].sort_index())
    timed = prepare(raw, _spec(id_column="cid"), AS_OF, "x.csv").features  # time-ordered: keeps its split
    assert "fold" not in timed and set(timed["role"]) == {"train", "valid", "calib", "test"}


def test_score_file_rows_are_scored_not_trained_on() -> None:
    raw = _raw()
    score = raw.drop(columns=["y"]).head(30)
    f = prepare(raw, _spec(), AS_OF, "x.csv", score_raw=score).features
    s = f[f["role"] == "score"]
    assert len(s) == 30 and s["purchase_h"].isna().all() and (s["snapshot_date"] == AS_OF).all()
    assert [row_of_score_key(k) for k in s["customer_id"]] == list(range(1, 31))
    assert score_key(7) == "s0000007"


def test_a_spec_that_does_not_fit_the_file_names_the_columns() -> None:
    with pytest.raises(TabularError, match=r"x.csv: .*\['nope'\].*The file has: age"):
        prepare(_raw(), _spec(drop=["nope"]), AS_OF, "x.csv")
    raw = _raw()
    raw.loc[5, "month"] = "smarch"
    with pytest.raises(TabularError, match="column 'month' has 1 value"):
        prepare(raw, _spec(), AS_OF, "x.csv")
    with pytest.raises(ValueError, match="at least 20%"):
        SplitShares(valid=0.3, calib=0.3, test=0.3)
    with pytest.raises(ValueError, match="both positive and negative"):
        _spec(negative=["yes"])


def test_rolling_windows_cover_the_test_rows_and_train_only_on_earlier_rows() -> None:
    from models.splits import SplitError, rolling_windows

    ws = rolling_windows(1000, 800, 4, 300, valid_share=0.1)
    assert [w.test for w in ws] == [(800, 850), (850, 900), (900, 950), (950, 1000)]
    for w in ws:
        assert w.train[0] == w.test[0] - 300 and w.train[1] == w.valid[0] and w.valid[1] == w.test[0]
        assert w.valid[1] - w.valid[0] == 30
    assert rolling_windows(1000, 100, 1, 5000)[0].train[0] == 0  # a window never reaches before the first row
    with pytest.raises(SplitError):
        rolling_windows(1000, 1000, 2, 300)


def test_alift_is_half_for_random_and_one_for_a_perfect_order() -> None:
    from models.metrics import alift

    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    assert alift(y, -np.arange(10.0)) > 0.89 and alift(y, np.arange(10.0)) < 0.11
    rng = np.random.default_rng(0)
    yy = rng.random(20000) < 0.1
    assert abs(alift(yy, rng.random(20000)) - 0.5) < 0.02


def test_a_file_with_both_flags_labels_both_and_neither_flag_is_a_feature() -> None:
    raw = _raw().assign(lapsed=lambda d: np.where(np.arange(len(d)) % 3 == 0, "Y", "N"))
    raw.loc[[5, 9], "lapsed"] = "?"
    raw.loc[[9, 20], "y"] = "maybe"  # row 9 is bad twice: counted once, under the primary target
    other = {"target": "lapsed", "target_kind": "churn", "positive": ["Y"], "negative": ["N"]}
    spec = _spec(other_target=other)
    prep = prepare(raw, spec, AS_OF, "x.csv")
    assert prep.rejects == {("allowed_values", "y"): 2, ("allowed_values", "lapsed"): 1}
    f = prep.features
    assert {"purchase_h", "lapse_h"} <= set(f.columns) and "lapsed" not in f.columns and "y" not in f.columns
    kept = raw.drop(index=[5, 9, 20]).reset_index(drop=True)
    assert (f["lapse_h"] == (kept["lapsed"] == "Y")).all() and (f["purchase_h"] == (kept["y"] == "yes")).all()
    labels = {d["name"]: d for d in prep.dictionary if d["role"] == "label"}
    assert set(labels) == {"purchase_h", "lapse_h"} and "lapsed" in labels["lapse_h"]["zh"]
    assert spec.outcome_words("lapse")[1] == "流失/退保" and spec.outcome_words()[1] == "新投保"
    caps = cap.for_source("tabular", synthetic=False, target="purchase", other_target="lapse")
    assert caps.models == ("purchase", "lapse") and caps.label == "purchase_h"
    name, cols = score_file.profile(caps)
    assert name == "propensity_retention" and {"p_purchase", "p_lapse"} <= {c.name for c in cols}
    with pytest.raises(ValueError, match="other kind"):
        _spec(other_target=other | {"target_kind": "purchase"})
    with pytest.raises(ValueError, match="cannot be the target"):
        _spec(other_target=other | {"target": "y", "target_kind": "lapse"})
    with pytest.raises(ValueError, match="quote it"):
        _spec(other_target=other | {"positive": [True]})


def test_capabilities_decide_which_stages_and_columns_apply() -> None:
    tab = cap.for_source("tabular", synthetic=False)
    book = cap.for_source("tables", synthetic=True)
    own = cap.for_source("tables", synthetic=False)
    assert tab.models == ("purchase",) and book.models == own.models == cap.ALL_MODELS
    for stage in ("generate", "truth_check"):
        assert "does not apply" in (cap.skip_reason(stage, tab) or "")
        assert cap.skip_reason(stage, book) is None
    assert cap.skip_reason("generate", own) and cap.skip_reason("report", own) is None
    assert all(cap.skip_reason(s, tab) is None
               for s in ("validate", "features", "train", "segment", "export", "report"))
    name, cols = score_file.profile(tab)
    kept = [c.name for c in cols]
    assert name == "propensity" and kept[:4] == ["customer_id", "as_of", "split_role", "p_purchase"]
    assert "p_lapse" not in kept and "recommended_channel" not in kept and "priority_tier" in kept
    assert "model_version_purchase" in kept and "model_version_value" not in kept
    name, cols = score_file.profile(cap.for_source("tabular", synthetic=False, target="lapse"))
    kept = [c.name for c in cols]
    assert name == "retention" and kept[:4] == ["customer_id", "as_of", "split_role", "p_lapse"]
    assert "p_purchase" not in kept and "model_version_lapse" in kept and "model_version_purchase" not in kept
    name, cols = score_file.profile(own)
    assert name == "book" and [c.name for c in cols] == score_file.NAMES and "split_role" not in score_file.NAMES


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


def _run(source: Path, tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    ws = tmp_path / "ws"
    code = run_source.main([str(source), "--workspace", str(ws), *extra])
    assert code == 0
    return ws, json.loads((ws / "data/reports/run_source.json").read_text(encoding="utf-8"))


def _check_propensity_outputs(ws: Path, as_of: str) -> dict:
    manifest = json.loads((ws / f"data/scores/manifest_{as_of}.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(ws / f"data/scores/scores_{as_of}.parquet")
    assert manifest["profile"] == "propensity" and list(scores.columns) == manifest["columns"]
    assert list(manifest["models"]) == ["purchase"] and scores["p_purchase"].between(0, 1).all()
    assert set(scores["priority_tier"]) <= {"P1", "P2", "P3", "P4"} and scores["reason_for_1"].notna().any()
    assert "skipped" in json.loads((ws / "data/reports/truth_check.json").read_text(encoding="utf-8"))
    assert "does not apply" in (ws / "data/reports/report.html").read_text(encoding="utf-8")
    seg = json.loads((ws / "data/reports/segments.json").read_text(encoding="utf-8"))
    return {"manifest": manifest, "scores": scores, "segments": seg}


@pytest.mark.slow
@pytest.mark.skipif(not (DATASETS / "bank_marketing/bank-additional-full.csv").is_file(),
                    reason="Bank Marketing data not present")
def test_bank_marketing_runs_through_the_pipeline_out_of_time(tmp_path: Path) -> None:
    ws, summary = _run(REPO / "benchmarks/sources/bank_marketing.yaml", tmp_path)
    out = _check_propensity_outputs(ws, "2010-12-01")
    meta = json.loads((ws / "data/models/purchase/meta.json").read_text(encoding="utf-8"))
    used = [*meta["features"]["numeric"], *meta["features"]["categorical"]]
    assert "duration" not in used and "y" not in used and len(used) == 19
    features = pd.read_parquet(ws / "data/features/features.parquet")
    last_train = features.loc[features["role"] == "train", "snapshot_date"].max()
    assert features.loc[features["role"] == "test", "snapshot_date"].min() >= last_train  # later rows test
    assert len(out["scores"]) == len(features)  # no score file: every row is scored, saying how it was used
    assert out["scores"]["split_role"].value_counts().to_dict() == features["role"].value_counts().to_dict()
    assert summary["train"]["models"]["purchase"]["lightgbm"]["roc_auc"] > 0.6
    assert out["segments"]["backtest"]["tiers_monotone_purchase_rate"]
    rolling = summary["train"]["rolling"]  # Moro's rolling window over the same test rows
    assert len(rolling["windows"]) == 5 and rolling["pooled"]["test_rows"] == (features["role"] == "test").sum()
    assert all(w["train_rows"][1] <= w["test_rows"][0] for w in rolling["windows"])
    assert rolling["pooled"]["lightgbm_auc"] > 0.65 and 0.5 < rolling["pooled"]["lightgbm_alift"] < 1


@pytest.mark.slow
@pytest.mark.skipif(not (DATASETS / "coil2000/ticdata2000.txt").is_file(), reason="CoIL 2000 data not present")
def test_coil2000_runs_through_the_pipeline_and_selects_800(tmp_path: Path) -> None:
    top = tmp_path / "top800.csv"
    ws, summary = _run(REPO / "benchmarks/sources/coil2000.yaml", tmp_path, "--top-out", str(top))
    out = _check_propensity_outputs(ws, "2000-06-01")
    assert len(out["scores"]) == 4000  # the evaluation file, scored; its labels are never read
    sel = pd.read_csv(top)
    assert len(sel) == 800 and sel["row"].is_unique and sel["row"].between(1, 4000).all()
    assert sel["p_purchase"].is_monotonic_decreasing
    assert sel["p_purchase"].min() >= out["scores"]["p_purchase"].quantile(0.79)
    with pytest.raises(UserError, match="fewer than the 5000 to select"):
        run_source.write_top(ws / "data/scores/scores_2000-06-01.parquet", 5000, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    assert summary["train"]["models"]["purchase"]["lightgbm"]["roc_auc"] > 0.6
    # a small file without time order: cross-fitted, so the final model learns from all 5,822 labelled rows
    assert summary["train"]["split"]["kind"] == "crossfit"
    assert summary["train"]["models"]["purchase"]["rows"]["train"] == 5822
    assert out["segments"]["backtest"]["customers"] == 5822 and out["segments"]["backtest"]["rows"] == "out of fold"


def test_validate_stage_stops_on_too_many_bad_targets_naming_file_column_rule_and_rows(tmp_path: Path, monkeypatch,
                                                                                      capsys) -> None:
    from pipelines import validate

    raw = _raw(100)
    raw.loc[[0, 1, 2, 3], "y"] = "?"
    (tmp_path / "src").mkdir()
    raw.to_csv(tmp_path / "src/bank.csv", sep=";", index=False)
    params = repo_params_raw()
    params["validate"] = {"max_reject_share": 0.02, "source": {
        "kind": "tabular", "dir": "src", "format": "csv", "encoding": "utf-8", "delimiter": ";",
        "tabular": _spec(file="bank.csv").model_dump()}}
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


def _experiment_file(path: Path, n: int = 40_000, seed: int = 7) -> None:
    """A randomised campaign with a known effect: a call adds +1.2 log-odds to buying for customers with
    x1 > 0 and nothing for the rest; an SMS adds +0.25 for everyone; a tenth of the customers are held out."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    arm = rng.choice(["call", "sms", "holdout"], n, p=[0.45, 0.45, 0.10])
    logit = -3.0 + 0.5 * x2 + np.where(arm == "call", np.where(x1 > 0, 1.2, 0.0), 0.0) + np.where(arm == "sms", 0.25, 0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    from tests.test_personal import mobile, resident_id

    # personal data under the names real exports use (issue 23): none of it may reach any output
    pd.DataFrame({"customer": [f"K{i:06d}" for i in range(n)], "x1": x1.round(4), "x2": x2.round(4),
                  "region": rng.choice(["north", "south"], n), "campaign_arm": arm,
                  "mobile": [mobile(rng) for _ in range(n)], "姓名": [f"王某{i:06d}" for i in range(n)],
                  "身份证号": [resident_id(rng) for _ in range(n)],
                  "bought": np.where(y, "yes", "no")}).to_csv(path, index=False)


@pytest.mark.slow
def test_a_randomised_experiment_source_yields_uplift_per_arm_and_the_best_arm(tmp_path: Path) -> None:
    data = tmp_path / "exp"
    data.mkdir()
    _experiment_file(data / "campaign.csv")
    source = tmp_path / "experiment.yaml"
    source.write_text(f"""
book: {{as_of: "2026-09-30"}}
validate:
  source:
    kind: tabular
    dir: {data.as_posix()}
    format: csv
    tabular:
      file: campaign.csv
      id_column: customer
      target: bought
      positive: ["yes"]
      negative: ["no"]
      time_order: none
      split: {{valid: 0.15, calib: 0.15, test: 0.25}}
      experiment:
        treatment: campaign_arm
        control: holdout
        value_per_success: 100
        arm_cost: {{call: 2.0, sms: 0.1}}
  max_reject_share: 0.0
uplift: {{min_treated: 500}}
train: {{min_positives: {{train: 100, holdout: 20}}}}
registry: {{model_name_prefix: experiment}}
""", encoding="utf-8")
    ws, _ = _run(source, tmp_path)
    features = pd.read_parquet(ws / "data/features/features.parquet")
    meta = json.loads((ws / "data/models/purchase/meta.json").read_text(encoding="utf-8"))
    assert "campaign_arm" not in [*meta["features"]["numeric"], *meta["features"]["categorical"]]
    assert set(features["treatment"].dropna()) == {"call", "sms", "none"}
    report = json.loads((ws / "data/reports/uplift.json").read_text(encoding="utf-8"))
    assert report["arms"] == ["call", "sms"] and report["supported"] == ["call", "sms"]
    call = report["holdout_evaluation"]["call"]
    assert call["ate"] > 0 and call["qini_uplift"] > call["qini_random"]
    seg = pd.read_parquet(ws / "data/segments/segments.parquet").merge(
        features[["customer_id", "x1"]], on="customer_id")
    # a call pays where it works (x1 > 0) and is not worth its cost where it does nothing
    assert (seg["tau_call"][seg["x1"] > 0.5].mean()) > 3 * abs(seg["tau_call"][seg["x1"] < -0.5].mean())
    assert (seg.loc[seg["x1"] > 0.5, "recommended_arm"] == "call").mean() > 0.7
    assert (seg.loc[seg["x1"] < -0.5, "recommended_arm"] != "call").mean() > 0.7
    manifest = json.loads((ws / "data/scores/manifest_2026-09-30.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(ws / "data/scores/scores_2026-09-30.parquet")
    assert manifest["profile"] == "experiment" and list(scores.columns) == manifest["columns"]
    assert set(scores["recommended_arm"].dropna()) <= {"call", "sms"} and scores["arm_value"].dropna().gt(0).all()
    _assert_no_personal_data(ws, pd.read_csv(data / "campaign.csv", dtype=str))


def _assert_no_personal_data(ws: Path, raw: pd.DataFrame) -> None:
    """No personal column in the model, and none of its values in any text output, MLflow artifact or score."""
    hidden = ["mobile", "姓名", "身份证号"]
    dropped = json.loads((ws / "data/reports/validation.json").read_text(encoding="utf-8"))["personal_columns_dropped"]
    assert {d["column"] for d in dropped} == set(hidden)
    meta = json.loads((ws / "data/models/purchase/meta.json").read_text(encoding="utf-8"))
    assert not set(hidden) & {*meta["features"]["numeric"], *meta["features"]["categorical"]}
    values = set(raw[hidden].sample(300, random_state=0).stack())
    texts = [p for p in ws.rglob("*") if p.is_file() and p.suffix in {".json", ".csv", ".txt", ".yaml", ".html", ""}
             and p.stat().st_size < 50_000_000]
    assert texts
    for p in texts:
        text = p.read_text(encoding="utf-8", errors="ignore")
        assert not any(v in text for v in values), p
    scores = pd.read_parquet(next((ws / "data/scores").glob("scores_*.parquet")))
    assert not scores.astype(str).isin(values).any().any()


def test_experiment_arms_are_the_treatment_never_a_feature_and_unknown_arms_are_quarantined() -> None:
    raw = _raw().assign(arm=lambda d: np.resize(["call", "sms", "ctrl"], len(d)))
    raw.loc[[5, 9], "arm"] = "fax"
    spec = _spec(experiment={"treatment": "arm", "control": "ctrl", "arms": ["call", "sms"],
                             "value_per_success": 50})
    prep = prepare(raw, spec, AS_OF, "x.csv")
    assert prep.rejects == {("allowed_values", "arm"): 2} and prep.quarantine["row"].tolist() == [6, 10]
    assert set(prep.features["treatment"]) == {"call", "sms", "none"}
    assert "arm" not in prep.features and "arm" not in [d["name"] for d in prep.dictionary]
    with pytest.raises(ValueError, match="control value"):
        _spec(experiment={"treatment": "arm", "control": "call", "arms": ["call"], "value_per_success": 1})
    caps = cap.for_source("tabular", False, experiment=True)
    assert caps.experiment and caps.models == ("purchase",)


def test_personal_columns_never_become_features_whatever_they_are_called() -> None:
    """Issue 23: `mobile`, `姓名`, `身份证号` and phone numbers behind an innocent name all stay out of the features,
    the dictionary and the quarantine; a Yes/No column named after phones stays in."""
    from tests.test_personal import mobile, resident_id

    rng = np.random.default_rng(5)
    raw = _raw()
    n = len(raw)
    raw["mobile"] = [mobile(rng) for _ in range(n)]
    raw["姓名"] = [f"张{i}" for i in range(n)]
    raw["身份证号"] = [resident_id(rng) for _ in range(n)]
    raw["contact_ref"] = [mobile(rng) for _ in range(n)]
    raw["PhoneService"] = rng.choice(["Yes", "No"], n)
    raw.loc[[2, 5], "y"] = "maybe"  # quarantined rows must not carry them either
    prep = prepare(raw, _spec(), AS_OF, "x.csv")
    hidden = {"mobile", "姓名", "身份证号", "contact_ref", "phone"}
    assert {f.column for f in prep.personal} == hidden
    feats = {d["name"] for d in prep.dictionary if d["role"] == "feature"}
    assert not feats & hidden and "PhoneService" in feats
    assert not set(prep.features.columns) & hidden and not set(prep.quarantine.columns) & hidden
    values = set(raw["mobile"]) | set(raw["contact_ref"]) | set(raw["身份证号"])
    frames = (prep.features, prep.quarantine)
    assert not any(frame.astype(str).isin(values).any().any() for frame in frames)


def test_a_personal_key_stops_the_source_and_declarations_are_honoured() -> None:
    from tests.test_personal import mobile

    rng = np.random.default_rng(6)
    raw = _raw()
    raw["cust"] = [mobile(rng) for _ in range(len(raw))]
    with pytest.raises(TabularError, match=r"id_column 'cust'.*personal_key"):
        prepare(raw, _spec(id_column="cust"), AS_OF, "x.csv")
    raw = _raw()
    raw["remark"] = "free text"
    raw["phone_count"] = rng.integers(0, 100, len(raw))
    prep = prepare(raw, _spec(personal=["remark"], not_personal=["phone_count"]), AS_OF, "x.csv")
    assert {f.column: f.kind for f in prep.personal} == {"remark": "declared", "phone": "phone"}
    assert "phone_count" in prep.features.columns and "remark" not in prep.features.columns


def test_a_source_file_resolves_its_dir_against_its_own_folder_and_must_name_its_as_of(tmp_path: Path) -> None:
    """Issue 20: `dir: data` in sources/churn.yaml means sources/data, wherever the command runs; a missing as-of
    is an error, never the synthetic book's date; `as_of: today` is allowed."""
    folder = tmp_path / "sources"
    (folder / "data").mkdir(parents=True)
    _raw().to_csv(folder / "data/x.csv", index=False)
    spec = {k: v for k, v in _spec().model_dump().items() if v not in (None, [], {})}
    body = {"validate": {"source": {"kind": "tabular", "dir": "data", "format": "csv", "tabular": spec}}}
    src = folder / "churn.yaml"
    src.write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"set book.as_of"):
        run_source.load_source(src, REPO / "params.yaml")
    src.write_text(yaml.safe_dump({"book": {"as_of": "today"}, **body}), encoding="utf-8")
    merged, _ = run_source.load_source(src, REPO / "params.yaml")
    assert Path(merged["validate"]["source"]["dir"]) == (folder / "data").resolve()
    assert merged["book"]["as_of"] == dt.date.today().isoformat()


def test_an_id_like_column_stops_the_source_unless_declared() -> None:
    """Issue 20: without id_column, a unique non-numeric column would become a feature and the score file could
    not be joined back; YAML booleans in value lists get a hint."""
    raw = _raw().assign(customerID=[f"{i:04d}-ABCD" for i in range(200)])
    with pytest.raises(TabularError, match=r"'customerID'.*id_like.*id_column: customerID"):
        prepare(raw, _spec(), AS_OF, "x.csv")
    keyed = prepare(raw, _spec(id_column="customerID"), AS_OF, "x.csv")
    assert keyed.features["customer_id"].iloc[0] == "0000-ABCD" and "customerID" not in keyed.features
    by_row = prepare(raw.drop(columns=["customerID"]), _spec(id_column="none"), AS_OF, "x.csv")
    assert by_row.features["customer_id"].iloc[0] == "r0000001"
    with pytest.raises(ValueError, match="quote it: 'Yes'"):
        _spec(positive=[True], negative=[False])


def _subscriptions(path: Path, n: int = 4000, seed: int = 11) -> pd.DataFrame:
    """A subscription book as a CRM exports it: an ID column, a Yes/No churn flag with signal, CRLF line ends
    and a blank numeric cell."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.25, 0.2])
    tenure = rng.integers(0, 72, n)
    charges = np.round(rng.uniform(18, 120, n), 2)
    logit = -1.2 + 1.6 * (contract == "Month-to-month") - 0.04 * tenure + 0.012 * charges
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    df = pd.DataFrame({"customerID": [f"{i:04d}-{''.join(rng.choice(list('ABCDEFGHJK'), 5))}" for i in range(n)],
                       "gender": rng.choice(["Female", "Male"], n), "tenure": tenure, "Contract": contract,
                       "MonthlyCharges": charges.astype(object), "Churn": churn})
    df.loc[17, "MonthlyCharges"] = ""
    df.to_csv(path, index=False, lineterminator="\r\n")
    return df


def test_a_churn_flag_trains_the_churn_model_and_scores_every_row_as_documented(tmp_path: Path) -> None:
    text = (REPO / "docs/your_data.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("# subscriptions.yaml"))
    (tmp_path / "exports").mkdir()
    raw = _subscriptions(tmp_path / "exports" / "subscriptions.csv")
    assert b"\r\n" in (tmp_path / "exports" / "subscriptions.csv").read_bytes()[:200]
    source = tmp_path / "subscriptions.yaml"
    source.write_text(block, encoding="utf-8")
    ws, _ = _run(source, tmp_path)
    manifest = json.loads((ws / "data/scores/manifest_2026-09-30.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(ws / "data/scores/scores_2026-09-30.parquet")
    assert manifest["profile"] == "retention" and list(scores.columns) == manifest["columns"]
    assert manifest["target"]["kind"] == "lapse" and manifest["target"]["en"] == "cancelled the subscription"
    assert list(manifest["models"]) == ["lapse"] and manifest["models"]["lapse"]["name"] == "subscriptions-lapse"
    assert "p_lapse" in scores and "p_purchase" not in scores and scores["p_lapse"].between(0, 1).all()
    # every row of the file is scored, keyed by its ID, and says how it was used: a 4,000-row file is cross-fitted,
    # so every row trained the final model and the metrics are out of fold
    assert sorted(scores["customer_id"]) == sorted(raw["customerID"])
    assert set(scores["split_role"]) == {"train"}
    assert raw.loc[17, "customerID"] in set(scores["customer_id"])  # the blank numeric cell is a null, not a reject
    # reasons come from the churn model: the contract type drives churn here
    assert scores["reason_for_1"].str.contains("Contract type|Months as a customer").mean() > 0.5
    reasons = scores.filter(like="reason_").stack().dropna().astype(str)
    reasons = reasons[reasons != ""]
    assert reasons.str.contains("Contract type: month to month / 合同类型: 按月").any()  # declared labels
    assert not reasons.str.contains("Month-to-month").any()
    assert all(r.split(" / ")[0] != r.split(" / ")[1] for r in reasons)  # never the same half twice
    seg = json.loads((ws / "data/reports/segments.json").read_text(encoding="utf-8"))
    assert seg["ranked_by"] == "premium_at_risk" and seg["target"] == "lapse"
    assert "tiers_monotone_lapse_rate" in seg["backtest"] and "realised_lapse_rate" in seg["backtest"]["tiers"]["P1"]
    train = json.loads((ws / "data/reports/train.json").read_text(encoding="utf-8"))
    assert train["models_trained"] == ["lapse"] and train["models"]["lapse"]["lightgbm"]["roc_auc"] > 0.7
    assert train["split"]["kind"] == "crossfit" and train["models"]["lapse"]["rows"]["train"] == len(raw)
    assert seg["backtest"]["rows"] == "out of fold" and seg["backtest"]["customers"] == len(raw)
    p1, p4 = (seg["backtest"]["tiers"][t]["realised_lapse_rate"] for t in ("P1", "P4"))
    assert p1 > p4  # the riskiest-and-most-valuable tier lapses more than the last


def _docs_block(start: str) -> str:
    text = (REPO / "docs/your_data.md").read_text(encoding="utf-8")
    return next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith(start))


@pytest.mark.slow
def test_a_file_with_both_flags_trains_both_models_and_its_report_shows_what_applies(tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    raw = _subscriptions(tmp_path / "exports" / "subscriptions.csv")
    rng = np.random.default_rng(5)  # an upgrade flag that depends on tenure, not on the contract's churn signal
    p = 1 / (1 + np.exp(-(-2.0 + 0.04 * raw["tenure"].astype(float))))
    raw["Upgraded"] = np.where(rng.random(len(raw)) < p, "Yes", "No")
    raw.loc[[3, 8], "Upgraded"] = "unknown"  # neither positive nor negative: quarantined
    raw.to_csv(tmp_path / "exports" / "subscriptions.csv", index=False, lineterminator="\r\n")
    source = _docs_block("# subscriptions.yaml")
    other = "\n".join(line for line in _docs_block("# other_target").splitlines() if not line.startswith("#"))
    source = source.replace("      premium_column:", other + "\n      premium_column:", 1)
    (tmp_path / "subscriptions.yaml").write_text(source, encoding="utf-8")
    ws, _ = _run(tmp_path / "subscriptions.yaml", tmp_path)
    manifest = json.loads((ws / "data/scores/manifest_2026-09-30.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(ws / "data/scores/scores_2026-09-30.parquet")
    assert manifest["profile"] == "propensity_retention" and list(scores.columns) == manifest["columns"]
    assert set(manifest["models"]) == {"lapse", "purchase"}
    assert manifest["target"]["kind"] == "lapse" and manifest["target"]["other"]["en"] == "bought an upgrade"
    assert scores["p_lapse"].between(0, 1).all() and scores["p_purchase"].between(0, 1).all()
    assert len(scores) == len(raw) - 2 and not set(raw.loc[[3, 8], "customerID"]) & set(scores["customer_id"])
    train = json.loads((ws / "data/reports/train.json").read_text(encoding="utf-8"))
    assert train["models"]["lapse"]["lightgbm"]["roc_auc"] > 0.7 and train["models"]["purchase"]["lightgbm"][
        "roc_auc"] > 0.6
    # each probability follows its own flag: purchase by tenure, churn by contract and tenure
    test = scores.merge(raw, left_on="customer_id", right_on="customerID")
    assert np.corrcoef(test["p_purchase"], test["tenure"])[0, 1] > 0.5
    assert np.corrcoef(test["p_lapse"], test["tenure"])[0, 1] < 0
    # the report renders what applies (both models, the tier backtest, drift) and names what does not
    page = (ws / "data/reports/report.html").read_text(encoding="utf-8")
    for text in ("Models vs baselines", "lapse: LightGBM", "purchase: LightGBM", "lightgbm + ",
                 "Tier backtest on the test rows", "premium_at_risk", "positive rate (purchase_h)",
                 "Drift: training rows vs scored rows", "What does not apply to this source", "contact plan"):
        assert text in page, text
    assert "the rules" not in page  # a one-file source has no rule baseline to claim a win or loss against
    figures = {f.name for f in (ws / "data/reports/figures").iterdir()}
    assert {"curves_lapse.png", "curves_purchase.png", "tier_backtest.png", "drift.png"} <= figures

