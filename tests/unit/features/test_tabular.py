"""Tabular sources (one file whose columns are the features): preparation, splits, personal data, capabilities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from features.intake import capabilities as cap
from features.intake.tabular import SplitShares, TabularError, prepare, row_of_score_key, score_key
from pipelines import score_file
from pipelines.stage_needs import skip_reason
from tests.builders import AS_OF, bank_rows, mobile, resident_id, tabular_spec


def test_prepare_orders_roles_in_time_and_never_uses_leaky_or_personal_columns() -> None:
    raw = bank_rows()
    prep = prepare(raw, tabular_spec(drop=["duration", "phone"]), AS_OF, "x.csv")
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
    raw = bank_rows()
    raw.loc[[3, 7, 11], "y"] = "maybe"
    prep = prepare(raw, tabular_spec(), AS_OF, "x.csv")
    assert prep.rejects == {("allowed_values", "y"): 3}
    assert prep.quarantine["row"].tolist() == [4, 8, 12] and len(prep.features) == len(raw) - 3
    assert "phone" not in prep.quarantine and "duration" not in prep.quarantine  # personal / dropped: never kept
    assert prep.n_input == len(prep.features) + len(prep.quarantine)


def test_hashed_split_is_stable_whatever_the_row_order() -> None:
    raw = bank_rows(400).assign(cid=[f"c{i}" for i in range(400)])
    split = {"valid": 0.1, "calib": 0.1, "test": 0.2, "crossfit_max_rows": 0}  # a large file: split, not cross-fit
    spec = tabular_spec(time_order="none", month_column=None, start_year=None, id_column="cid", split=split)
    a = prepare(raw, spec, AS_OF, "x.csv").features.set_index("customer_id")["role"]
    b = prepare(raw.sample(frac=1, random_state=1), spec, AS_OF, "x.csv").features.set_index("customer_id")["role"]
    assert a.sort_index().equals(b.sort_index())
    shares = a.value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.07 and abs(shares["train"] - 0.6) < 0.08


def test_a_small_file_without_time_order_is_cross_fitted_in_stable_stratified_folds() -> None:
    raw = bank_rows(400).assign(cid=[f"c{i}" for i in range(400)])
    spec = tabular_spec(time_order="none", month_column=None, start_year=None, id_column="cid")
    f = prepare(raw, spec, AS_OF, "x.csv").features
    assert (f["role"] == "train").all() and set(f["fold"]) == {0, 1, 2, 3, 4}  # every row trains the final model
    per_fold = f.groupby("fold")["purchase_h"].agg(["size", "sum"])
    assert per_fold["size"].max() - per_fold["size"].min() <= 2 and per_fold["sum"].max() - per_fold["sum"].min() <= 1
    g = prepare(raw.sample(frac=1, random_state=1), spec, AS_OF, "x.csv").features
    assert f.set_index("customer_id")["fold"].sort_index().equals(g.set_index("customer_id")["fold"].sort_index())
    timed = prepare(raw, tabular_spec(id_column="cid"), AS_OF, "x.csv").features  # time-ordered: keeps its split
    assert "fold" not in timed and set(timed["role"]) == {"train", "valid", "calib", "test"}


def test_score_file_rows_are_scored_not_trained_on() -> None:
    raw = bank_rows()
    score = raw.drop(columns=["y"]).head(30)
    f = prepare(raw, tabular_spec(), AS_OF, "x.csv", score_raw=score).features
    s = f[f["role"] == "score"]
    assert len(s) == 30 and s["purchase_h"].isna().all() and (s["snapshot_date"] == AS_OF).all()
    assert [row_of_score_key(k) for k in s["customer_id"]] == list(range(1, 31))
    assert score_key(7) == "s0000007"


def test_a_spec_that_does_not_fit_the_file_names_the_columns() -> None:
    with pytest.raises(TabularError, match=r"x.csv: .*\['nope'\].*The file has: age"):
        prepare(bank_rows(), tabular_spec(drop=["nope"]), AS_OF, "x.csv")
    raw = bank_rows()
    raw.loc[5, "month"] = "smarch"
    with pytest.raises(TabularError, match="column 'month' has 1 value"):
        prepare(raw, tabular_spec(), AS_OF, "x.csv")
    with pytest.raises(ValueError, match="at least 20%"):
        SplitShares(valid=0.3, calib=0.3, test=0.3)
    with pytest.raises(ValueError, match="both positive and negative"):
        tabular_spec(negative=["yes"])


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
    raw = bank_rows().assign(lapsed=lambda d: np.where(np.arange(len(d)) % 3 == 0, "Y", "N"))
    raw.loc[[5, 9], "lapsed"] = "?"
    raw.loc[[9, 20], "y"] = "maybe"  # row 9 is bad twice: counted once, under the primary target
    other = {"target": "lapsed", "target_kind": "churn", "positive": ["Y"], "negative": ["N"]}
    spec = tabular_spec(other_target=other)
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
        tabular_spec(other_target=other | {"target_kind": "purchase"})
    with pytest.raises(ValueError, match="cannot be the target"):
        tabular_spec(other_target=other | {"target": "y", "target_kind": "lapse"})
    with pytest.raises(ValueError, match="quote it"):
        tabular_spec(other_target=other | {"positive": [True]})


def test_capabilities_decide_which_stages_and_columns_apply() -> None:
    tab = cap.for_source("tabular", synthetic=False)
    book = cap.for_source("tables", synthetic=True)
    own = cap.for_source("tables", synthetic=False)
    assert tab.models == ("purchase",) and book.models == own.models == cap.ALL_MODELS
    for stage in ("generate", "truth", "truth_check"):
        assert "does not apply" in (skip_reason(stage, tab) or "")
        assert skip_reason(stage, book) is None
    assert skip_reason("generate", own) and skip_reason("truth", own) and skip_reason("report", own) is None
    assert all(skip_reason(s, tab) is None
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


def test_experiment_arms_are_the_treatment_never_a_feature_and_unknown_arms_are_quarantined() -> None:
    raw = bank_rows().assign(arm=lambda d: np.resize(["call", "sms", "ctrl"], len(d)))
    raw.loc[[5, 9], "arm"] = "fax"
    spec = tabular_spec(experiment={"treatment": "arm", "control": "ctrl", "arms": ["call", "sms"],
                             "value_per_success": 50})
    prep = prepare(raw, spec, AS_OF, "x.csv")
    assert prep.rejects == {("allowed_values", "arm"): 2} and prep.quarantine["row"].tolist() == [6, 10]
    assert set(prep.features["treatment"]) == {"call", "sms", "none"}
    assert "arm" not in prep.features and "arm" not in [d["name"] for d in prep.dictionary]
    with pytest.raises(ValueError, match="control value"):
        tabular_spec(experiment={"treatment": "arm", "control": "call", "arms": ["call"], "value_per_success": 1})
    caps = cap.for_source("tabular", False, experiment=True)
    assert caps.experiment and caps.models == ("purchase",)


def test_personal_columns_never_become_features_whatever_they_are_called() -> None:
    """Issue 23: `mobile`, `姓名`, `身份证号` and phone numbers behind an innocent name all stay out of the features,
    the dictionary and the quarantine; a Yes/No column named after phones stays in."""
    rng = np.random.default_rng(5)
    raw = bank_rows()
    n = len(raw)
    raw["mobile"] = [mobile(rng) for _ in range(n)]
    raw["姓名"] = [f"张{i}" for i in range(n)]
    raw["身份证号"] = [resident_id(rng) for _ in range(n)]
    raw["contact_ref"] = [mobile(rng) for _ in range(n)]
    raw["PhoneService"] = rng.choice(["Yes", "No"], n)
    raw.loc[[2, 5], "y"] = "maybe"  # quarantined rows must not carry them either
    prep = prepare(raw, tabular_spec(), AS_OF, "x.csv")
    hidden = {"mobile", "姓名", "身份证号", "contact_ref", "phone"}
    assert {f.column for f in prep.personal} == hidden
    feats = {d["name"] for d in prep.dictionary if d["role"] == "feature"}
    assert not feats & hidden and "PhoneService" in feats
    assert not set(prep.features.columns) & hidden and not set(prep.quarantine.columns) & hidden
    values = set(raw["mobile"]) | set(raw["contact_ref"]) | set(raw["身份证号"])
    frames = (prep.features, prep.quarantine)
    assert not any(frame.astype(str).isin(values).any().any() for frame in frames)


def test_a_personal_key_stops_the_source_and_declarations_are_honoured() -> None:
    rng = np.random.default_rng(6)
    raw = bank_rows()
    raw["cust"] = [mobile(rng) for _ in range(len(raw))]
    with pytest.raises(TabularError, match=r"id_column 'cust'.*personal_key"):
        prepare(raw, tabular_spec(id_column="cust"), AS_OF, "x.csv")
    raw = bank_rows()
    raw["remark"] = "free text"
    raw["phone_count"] = rng.integers(0, 100, len(raw))
    prep = prepare(raw, tabular_spec(personal=["remark"], not_personal=["phone_count"]), AS_OF, "x.csv")
    assert {f.column: f.kind for f in prep.personal} == {"remark": "declared", "phone": "phone"}
    assert "phone_count" in prep.features.columns and "remark" not in prep.features.columns


def test_an_id_like_column_stops_the_source_unless_declared() -> None:
    """Issue 20: without id_column, a unique non-numeric column would become a feature and the score file could
    not be joined back; YAML booleans in value lists get a hint."""
    raw = bank_rows().assign(customerID=[f"{i:04d}-ABCD" for i in range(200)])
    with pytest.raises(TabularError, match=r"'customerID'.*id_like.*id_column: customerID"):
        prepare(raw, tabular_spec(), AS_OF, "x.csv")
    keyed = prepare(raw, tabular_spec(id_column="customerID"), AS_OF, "x.csv")
    assert keyed.features["customer_id"].iloc[0] == "0000-ABCD" and "customerID" not in keyed.features
    by_row = prepare(raw.drop(columns=["customerID"]), tabular_spec(id_column="none"), AS_OF, "x.csv")
    assert by_row.features["customer_id"].iloc[0] == "r0000001"
    with pytest.raises(ValueError, match="quote it: 'Yes'"):
        tabular_spec(positive=[True], negative=[False])
