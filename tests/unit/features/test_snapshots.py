"""Snapshot features: identical to the pandas reference, blind to the future, complete per customer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.intake.validation import validate_book
from features.simulator.book import SyntheticBook
from features.snapshots.definitions import KEYS, dictionary, feature_defs
from features.snapshots.plan import Snapshot, snapshot_plan
from features.snapshots.query import features_frame
from features.snapshots.reference import reference_snapshot
from pipelines.interim import register_tables
from pipelines.params import Params

H = 90


@pytest.fixture(scope="module")
def validated(small_book: SyntheticBook, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    as_of = small_book.truth["as_of"].iloc[0].date()
    res = validate_book({k: v.copy() for k, v in small_book.tables().items()}, as_of)
    return {k: r.accepted for k, r in res.items()}


def _con(tables: dict[str, pd.DataFrame], folder: Path) -> duckdb.DuckDBPyConnection:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    con = duckdb.connect()
    register_tables(con, folder)
    return con


def _sql(tables: dict[str, pd.DataFrame], folder: Path, p, plan: list[Snapshot]) -> pd.DataFrame:
    con = _con(tables, folder)
    try:
        return features_frame(con, p, plan, H).sort_values(KEYS).reset_index(drop=True)
    finally:
        con.close()


def _ref(tables: dict[str, pd.DataFrame], p, plan: list[Snapshot]) -> pd.DataFrame:
    parts = [reference_snapshot(tables, p, s.date, H, s.labels_known) for s in plan]
    return pd.concat(parts, ignore_index=True).sort_values(KEYS).reset_index(drop=True)


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    assert (got["customer_id"].to_numpy() == want["customer_id"].to_numpy()).all()
    for c in got.columns:
        g, w = got[c], want[c]
        assert (g.isna().to_numpy() == w.isna().to_numpy()).all(), f"{c}: nulls differ"
        m = g.notna().to_numpy()
        gv, wv = g[m].to_numpy(), w[m].to_numpy()
        if pd.api.types.is_float_dtype(g) or pd.api.types.is_float_dtype(w):
            np.testing.assert_allclose(gv.astype(float), wv.astype(float), rtol=1e-9, atol=1e-9, err_msg=c)
        elif c == "snapshot_date":
            assert (pd.to_datetime(gv) == pd.to_datetime(wv)).all()
        else:
            bad = [(a, b) for a, b in zip(gv, wv, strict=True) if a != b and str(a) != str(b)]
            assert not bad, f"{c}: {len(bad)} values differ, e.g. {bad[:3]}"


def _plan(small_params: Params, n: int = 6) -> list[Snapshot]:
    fp = small_params.features.model_copy(update={"n_train_snapshots": n, "snapshot_step_months": 2})
    return fp, snapshot_plan(small_params.book.as_of, fp, H)


def test_duckdb_stage_equals_the_pandas_reference(validated, small_params, tmp_path) -> None:
    fp, plan = _plan(small_params)
    assert any(s.labels_known for s in plan) and any(not s.labels_known for s in plan)
    got = _sql(validated, tmp_path, fp, plan)
    want = _ref(validated, fp, plan)
    assert_same(got, want)
    # the comparison is not vacuous: the features carry signal and the labels have positives
    assert got["n_phone_365d"].sum() > 0 and got["purchase_h"].sum() > 10 and got["lapse_h"].sum() > 5
    assert got["open_quote"].any() and got["in_campaign_holdout"].any() and got["n_claims_1095d"].sum() > 0


def _future_edits(tables: dict[str, pd.DataFrame], s: pd.Timestamp, rng: np.random.Generator) -> dict:
    """Add, remove and change events on or after ``s``; nothing before ``s`` changes."""
    t = {k: v.copy() for k, v in tables.items()}
    co = t["contacts"]
    after = co["contact_ts"] >= s
    drop = after & (rng.random(len(co)) < 0.5)
    co = co[~drop].copy()
    change = (co["contact_ts"] >= s) & (rng.random(len(co)) < 0.5) & ~co["holdout"]
    co.loc[change, "outcome"] = "complaint"
    co.loc[change, "channel"] = "visit"
    extra = co.sample(200, random_state=1, replace=True).copy()
    extra["contact_id"] = [f"KX{i}" for i in range(len(extra))]
    extra["contact_ts"] = s + pd.to_timedelta(rng.integers(0, 86400 * 60, len(extra)), unit="s")
    extra["outcome"] = np.where(extra["holdout"], None, "quote")
    t["contacts"] = pd.concat([co, extra], ignore_index=True)
    po = t["policies"]
    later = po["lapse_date"] >= s
    po.loc[later, "lapse_date"] = po.loc[later, "lapse_date"] + pd.Timedelta(days=7)
    new = po.sample(100, random_state=2).copy()
    new["policy_id"] = [f"PX{i}" for i in range(len(new))]
    new["issue_date"] = s + pd.to_timedelta(rng.integers(0, 60, len(new)), unit="D")
    new["lapse_date"] = pd.NaT
    new["surrender_date"] = pd.NaT
    t["policies"] = pd.concat([po, new], ignore_index=True)
    cl = t["claims"]
    cl = cl[cl["claim_date"] < s]
    t["claims"] = pd.concat([cl, t["claims"].head(20).assign(claim_date=s, claim_id=lambda d: "LX" + d["claim_id"])])
    cu = t["customers"]
    joined = cu.sample(30, random_state=3).copy()
    joined["customer_id"] = [f"CX{i}" for i in range(len(joined))]
    joined["created_date"] = s
    joined["referred_by"] = cu["customer_id"].iloc[0]
    t["customers"] = pd.concat([cu, joined], ignore_index=True)
    return t


@pytest.mark.parametrize("months_back", [4, 12])
def test_events_on_or_after_a_snapshot_never_change_its_features(validated, small_params, tmp_path,
                                                                 months_back: int) -> None:
    fp = small_params.features
    s = (pd.Timestamp(small_params.book.as_of) - pd.DateOffset(months=months_back)).date()
    plan = [Snapshot(s, labels_known=False, scoring=False)]
    before = _sql(validated, tmp_path / "a", fp, plan)
    edited = _future_edits(validated, pd.Timestamp(s), np.random.default_rng(months_back))
    after = _sql(edited, tmp_path / "b", fp, plan)
    assert_same(after, before)


def test_labels_only_see_the_horizon(validated, small_params, tmp_path) -> None:
    fp = small_params.features
    s = (pd.Timestamp(small_params.book.as_of) - pd.DateOffset(months=8)).date()
    plan = [Snapshot(s, labels_known=True, scoring=False)]
    base = _sql(validated, tmp_path / "a", fp, plan)
    t = {k: v.copy() for k, v in validated.items()}
    po = t["policies"]
    late = po.sample(300, random_state=5).copy()  # bought and lapsed only after the horizon ended
    late["policy_id"] = [f"PL{i}" for i in range(len(late))]
    late["issue_date"] = pd.Timestamp(s) + pd.Timedelta(days=H)
    t["policies"] = pd.concat([po, late], ignore_index=True)
    after = _sql(t, tmp_path / "b", fp, plan)
    assert_same(after, base)
    # ...while a purchase inside the horizon does change them
    inside = late.assign(issue_date=pd.Timestamp(s) + pd.Timedelta(days=H - 1))
    t["policies"] = pd.concat([po, inside], ignore_index=True)
    moved = _sql(t, tmp_path / "c", fp, plan)
    assert moved["purchase_h"].sum() > base["purchase_h"].sum()


def test_immature_snapshots_have_null_labels(validated, small_params, tmp_path) -> None:
    fp, plan = _plan(small_params)
    got = _sql(validated, tmp_path, fp, plan)
    for s in plan:
        rows = got[got["snapshot_date"] == pd.Timestamp(s.date)]
        assert rows[["purchase_h", "lapse_h", "premium_h"]].isna().all().all() != s.labels_known
        if s.labels_known:
            assert rows["purchase_h"].notna().all()
            # lapse is defined exactly for the holders of an in-force policy
            assert rows["lapse_h"].notna().equals(rows["n_inforce"] > 0)


def test_customer_without_contacts_gets_a_row_of_zeros_and_nulls(validated, small_params, tmp_path) -> None:
    fp, plan = _plan(small_params, n=2)
    silent = set(validated["customers"]["customer_id"]) - set(validated["contacts"]["customer_id"])
    assert silent
    got = _sql(validated, tmp_path, fp, plan)
    rows = got[got["customer_id"].isin(silent)]
    existing = validated["customers"]
    for s in plan:
        expected = existing[(existing["created_date"] < pd.Timestamp(s.date)) & existing["customer_id"].isin(silent)]
        assert len(rows[rows["snapshot_date"] == pd.Timestamp(s.date)]) == len(expected)
    counts = [c for c in rows.columns if c.startswith(("n_phone", "n_contacts", "n_outbound", "n_quote"))]
    assert (rows[counts] == 0).all().all()
    assert rows["days_since_last_contact"].isna().all() and rows["reached_rate_30d"].isna().all()
    assert not rows["open_quote"].any() and not rows["in_campaign_holdout"].any()


def test_snapshot_plan(small_params) -> None:
    fp = small_params.features
    as_of = small_params.book.as_of
    plan = snapshot_plan(as_of, fp, H, history_start=as_of - dt.timedelta(days=1095))
    assert plan[-1].date == as_of and plan[-1].scoring and not plan[-1].labels_known
    assert [s.date for s in plan] == sorted(s.date for s in plan)
    for s in plan:
        assert s.labels_known == (s.date + dt.timedelta(days=H) <= as_of)
        assert s.scoring or s.date >= as_of - dt.timedelta(days=1095) + dt.timedelta(days=fp.windows_days[-1])


@pytest.mark.parametrize("as_of", ["2026-10-31", "2026-02-28", "2024-02-29", "2026-09-15"])
def test_next_months_plan_keeps_this_months_dates(small_params, as_of: str) -> None:
    """A monthly re-run's training snapshots are the previous run's dates (what the cache reads back):
    month ends stay month ends, so 2026-10-31 follows 2026-09-30 at 08-31, not 08-30."""
    fp = small_params.features
    this = dt.date.fromisoformat(as_of)
    nxt = (pd.Timestamp(this) + (pd.offsets.MonthEnd(1) if pd.Timestamp(this).is_month_end
                                 else pd.DateOffset(months=1))).date()
    before = [s.date for s in snapshot_plan(this, fp, H)]
    after = [s.date for s in snapshot_plan(nxt, fp, H)]
    assert after[-1] == nxt and after[-2] == this
    assert after[:-1] == before[1:]
    assert len({(d.year, d.month) for d in after}) == len(after)  # one snapshot a month


def test_dictionary_describes_every_column(small_params, validated, tmp_path) -> None:
    fp, plan = _plan(small_params, n=1)
    got = _sql(validated, tmp_path, fp, plan)
    dic = dictionary(fp, H)
    assert [d["name"] for d in dic] == [c for c in got.columns if c not in KEYS]
    for d in dic:
        assert d["en"] and d["zh"] and d["family"] and d["dtype"] in {"int", "float", "category", "bool"}
    assert len({d.name for d in feature_defs(fp)}) == len(feature_defs(fp))


def test_windows_channels_and_outcomes_come_from_params(small_params) -> None:
    fp = small_params.features.model_copy(update={"windows_days": [14, 60], "channels": ["phone", "visit"],
                                                  "outcomes": ["quote"]})
    names = {d.name for d in feature_defs(fp)}
    assert {"n_phone_14d", "n_visit_60d", "n_quote_14d", "n_distinct_channels_60d"} <= names
    contact_like = {n for n in names if d_family(fp, n) in {"contacts", "outcomes", "engagement"}}
    assert not any(n.startswith(("n_sms_", "n_complaint_")) or n.endswith("_365d") for n in contact_like)
    assert contact_like


@pytest.mark.parametrize("holdout_days", [45, 90])
def test_other_windows_codes_and_holdout_windows_equal_the_reference(validated, small_params, tmp_path,
                                                                    holdout_days: int) -> None:
    """Fewer channels, an outcome list holding no_answer, and a holdout window that is not a window bound
    (inside the windows, or beyond the longest) add buckets of their own: still the reference's values."""
    fp, plan = _plan(small_params, n=2)
    fp = fp.model_copy(update={"windows_days": [14, 60], "channels": ["phone", "visit", "event"],
                               "outcomes": ["quote", "no_answer"], "holdout_window_days": holdout_days})
    got = _sql(validated, tmp_path, fp, plan)
    want = _ref(validated, fp, plan)
    assert_same(got, want)
    assert got["in_campaign_holdout"].any() and got["n_no_answer_60d"].sum() > 0


def d_family(fp, name: str) -> str:
    return next(d.family for d in feature_defs(fp) if d.name == name)


def test_features_doc_is_current() -> None:
    from pipelines.docs import render_features
    from tests.conftest import REPO

    doc = (REPO / "docs" / "features.md").read_text(encoding="utf-8")
    assert doc == render_features(REPO / "params.yaml"), "docs/features.md is stale: run `make docs`"


def test_single_statement_and_staged_script_agree(validated, small_params, tmp_path) -> None:
    """The portable one-statement form (for Spark) and the staged script (DuckDB) give the same rows."""
    from features.snapshots.query import materialise, snapshot_query

    fp, plan = _plan(small_params, n=3)
    con = _con(validated, tmp_path)
    for snap in plan:
        q = snapshot_query(fp, snap.date, H, snap.labels_known)
        one = con.execute(q.as_sql(), q.args(q.as_sql())).df().sort_values("customer_id").reset_index(drop=True)
        finals = materialise(con, q, partitions=3)
        assert len(finals) == 3
        parts = [con.execute(f, q.args(f)).df() for f in finals]
        assert all(len(part) > 0 for part in parts)
        staged = pd.concat(parts).sort_values("customer_id").reset_index(drop=True)
        assert_same(staged, one)


def test_training_sample_is_stable_and_exact(validated, small_params, tmp_path) -> None:
    """A sampled snapshot holds a stable subset of customers with exactly their unsampled values."""
    fp, plan = _plan(small_params, n=3)
    train = [s for s in plan if not s.scoring]
    con = _con(validated, tmp_path)
    n = len(validated["customers"])
    full = features_frame(con, fp, train, H, n_customers=n)
    half = features_frame(con, fp.model_copy(update={"train_sample_max_customers": n // 2}), train, H, n_customers=n)
    assert 0.3 < len(half) / len(full) < 0.7
    kept = half.groupby("snapshot_date")["customer_id"].apply(set)
    ids = list(kept)
    # the same customers at every snapshot (apart from customers who joined in between)
    assert ids[0] <= ids[-1]
    ref = full.merge(half[KEYS], on=KEYS).sort_values(KEYS).reset_index(drop=True)
    assert_same(half.sort_values(KEYS).reset_index(drop=True), ref)


def test_interim_tables_without_the_customer_key_ask_for_a_new_validate_run(validated, tmp_path: Path) -> None:
    from pipelines.errors import InputError

    old = {k: v.drop(columns=["customer_key", "referred_by_key"], errors="ignore") for k, v in validated.items()}
    with pytest.raises(InputError, match="no customer_key column .* re-run the validate stage"):
        _con(old, tmp_path)


def test_packed_window_counts_do_not_depend_on_the_field_width(validated, small_params, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Window counters are packed several to an integer: narrower fields give exactly the same counts."""
    from features.snapshots import counters

    fp, plan = _plan(small_params, n=2)
    wide = _sql(validated, tmp_path / "wide", fp, plan)
    monkeypatch.setattr(counters, "PACK_BITS", 8)
    monkeypatch.setattr(counters, "PACK_LIMIT", 2 ** 8)
    narrow = _sql(validated, tmp_path / "narrow", fp, plan)
    assert_same(narrow, wide)
    assert wide[[f"n_{ch}_365d" for ch in fp.channels]].to_numpy().max() > 2  # several touches per field


def test_a_count_beyond_the_packed_field_is_refused_not_wrapped(validated, small_params, tmp_path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer with more touches than a packed field holds stops the snapshot with a clear message."""
    from features.snapshots import counters
    from features.snapshots.query import FeatureBoundError

    fp, plan = _plan(small_params, n=1)
    monkeypatch.setattr(counters, "PACK_BITS", 3)
    monkeypatch.setattr(counters, "PACK_LIMIT", 2 ** 3)
    with pytest.raises(FeatureBoundError, match=r"customer\(s\) have 2 or more contact rows between \d+ and \d+ days "
                                                r"before the snapshot .*runaway or duplicated rows") as err:
        _sql(validated, tmp_path, fp, plan)
    assert err.value.table == "contacts"


def test_main_payment_mode_breaks_ties_like_the_reference(validated, small_params, tmp_path) -> None:
    """Equal premiums and issue dates: the earlier issue, then the mode first in A-Z wins, as in pandas."""
    t = {k: v.copy() for k, v in validated.items()}
    po = t["policies"]
    multi = po["customer_id"].map(po["customer_id"].value_counts()) > 1
    first = po.groupby("customer_id")["issue_date"].transform("min")
    po.loc[multi, "annual_premium"] = 1000.0
    po.loc[multi, "issue_date"] = first[multi]
    tied = po[multi].groupby("customer_id")["payment_mode"].nunique()
    assert (tied > 1).sum() > 20  # many customers whose largest policies tie with different modes
    fp = small_params.features
    plan = [Snapshot(small_params.book.as_of, labels_known=False, scoring=True)]
    got = _sql(t, tmp_path, fp, plan)
    want = _ref(t, fp, plan)
    assert_same(got[["customer_id", "main_payment_mode"]], want[["customer_id", "main_payment_mode"]])


def test_a_policy_count_beyond_the_packed_field_is_refused(validated, small_params, tmp_path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy counts are packed too: a customer holding more policies than a field holds stops the snapshot."""
    from features.snapshots import counters
    from features.snapshots.query import FeatureBoundError

    t = {k: v.copy() for k, v in validated.items()}
    one = t["policies"].iloc[[0] * 40].copy()
    one["policy_id"] = [f"PZ{i}" for i in range(len(one))]
    t["policies"] = pd.concat([t["policies"], one], ignore_index=True)
    monkeypatch.setattr(counters, "PACK_BITS", 5)
    monkeypatch.setattr(counters, "PACK_LIMIT", 2 ** 5)
    fp = small_params.features
    plan = [Snapshot(small_params.book.as_of, labels_known=False, scoring=True)]
    with pytest.raises(FeatureBoundError, match=r"policies: 1 customer\(s\) hold 32 or more policies") as err:
        _sql(t, tmp_path, fp, plan)
    assert err.value.table == "policies"  # the stage names data/interim/policies.parquet


@pytest.mark.parametrize("kind", ["duckdb", "spark"])
def test_the_snapshot_date_is_bound_never_written_into_the_sql(small_params, kind: str) -> None:
    """The date reaches the engine as a parameter: no statement spells it, every statement that needs it
    names the parameter, and the staged views (which DuckDB cannot prepare) need none."""
    from features.snapshots.dialect import dialect
    from features.snapshots.query import SNAPSHOT_PARAM, snapshot_query

    d = dialect(kind)  # type: ignore[arg-type]
    s = dt.date(2023, 7, 1)
    q = snapshot_query(small_params.features, s, H, labels_known=True, sample_fraction=0.5, dialect=d)
    stmts, finals = q.as_script(partitions=2, keys=(0, 99))
    texts = [*stmts, *finals, q.as_sql(), *(sql for _, sql, _ in q.checks)]
    assert not [t for t in texts if "2023-07-01" in t or "2023" in t]
    assert all(q.args(f) == {SNAPSHOT_PARAM: s} for f in [*finals, q.as_sql()])
    made = {t.split(" AS ", 1)[0].split()[-1]: t for t in stmts if t.startswith(("CREATE", "CACHE"))}
    assert {name for name, t in made.items() if q.args(t) is None} == {"smp", "pol_s", "pop"}
    assert all(q.args(t) == {SNAPSHOT_PARAM: s} for name, t in made.items() if name not in {"smp", "pol_s", "pop"})


def test_a_statement_without_the_parameter_gets_no_values(small_params) -> None:
    """DuckDB refuses values for parameters a statement does not use, so ``args`` must leave them out."""
    from features.snapshots.query import snapshot_query

    q = snapshot_query(small_params.features, dt.date(2023, 7, 1), H, labels_known=False)
    assert q.args("SELECT COUNT(*) FROM w0 WHERE n_rows >= 5") is None
    assert q.args("SELECT $snapshotx") is None  # a longer name is another parameter


def test_sums_of_money_do_not_depend_on_row_order() -> None:
    """Two runs of the 5M snapshot differed in the last bit of one premium: a sum of doubles depends on the order
    rows reach it, which parallel scans do not fix. The decimal sum gives one answer for every order."""
    from features.snapshots.query import exact_sum

    con = duckdb.connect()
    con.execute("SET threads = 1")
    orders = ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    got = {}
    for how, agg in (("double", "SUM(x)"), ("exact", exact_sum("x", "x > 0"))):
        got[how] = {con.execute(f"SELECT {agg} FROM (SELECT UNNEST($v::DOUBLE[]) AS x)", {"v": v}).fetchall()[0][0]
                    for v in orders}
    assert len(got["double"]) == 2  # the problem: 0.6000000000000001 one way, 0.6 the other
    assert got["exact"] == {0.6}
