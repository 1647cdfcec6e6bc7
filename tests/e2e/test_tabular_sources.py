"""Tabular sources end to end through `python -m pipelines.run_source` (the public data and generated books)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import run_source
from pipelines.errors import UserError
from tests.builders import mobile, resident_id
from tests.conftest import REPO, public_dataset


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
def test_bank_marketing_runs_through_the_pipeline_out_of_time(tmp_path: Path) -> None:
    public_dataset("bank_marketing/bank-additional-full.csv")
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
def test_coil2000_runs_through_the_pipeline_and_selects_800(tmp_path: Path) -> None:
    public_dataset("coil2000/ticdata2000.txt")
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
    # linear trees (the source's choice, docs/benchmarks.md) ship with their centre, and every row gets reasons
    meta = json.loads((ws / "data/models/purchase/meta.json").read_text(encoding="utf-8"))
    assert meta["params"]["linear_tree"] is True and len(meta["linear_centre"]) > 50
    top = out["scores"][out["scores"]["priority_tier"].isin(["P1", "P2"])]  # export.reasons: the tiers acted on
    assert top["reason_for_1"].notna().mean() > 0.9 and top["reason_against_1"].notna().any()
    assert out["scores"].loc[~out["scores"].index.isin(top.index), "reason_for_1"].isna().all()


def _experiment_file(path: Path, n: int = 40_000, seed: int = 7) -> None:
    """A randomised campaign with a known effect: a call adds +1.2 log-odds to buying for customers with
    x1 > 0 and nothing for the rest; an SMS adds +0.25 for everyone; a tenth of the customers are held out."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    arm = rng.choice(["call", "sms", "holdout"], n, p=[0.45, 0.45, 0.10])
    logit = -3.0 + 0.5 * x2 + np.where(arm == "call", np.where(x1 > 0, 1.2, 0.0), 0.0) + np.where(arm == "sms", 0.25, 0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
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
    top = scores[scores["priority_tier"].isin(["P1", "P2"])]  # the tiers acted on carry reasons (export.reasons)
    assert top["reason_for_1"].str.contains("Contract type|Months as a customer").mean() > 0.5
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
