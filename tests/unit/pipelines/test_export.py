"""Score files: pinned schema, readable reasons, the manifest commit protocol, and loading into databases."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from models import reasons
from models import segments as sg
from pipelines import crm_load, crm_rows, delivery, score_file, tracking
from pipelines.errors import InputError, UserError
from pipelines.io import staged_outputs
from tests.conftest import REPO

# The columns of schema versions 1.1 and 1.2 (1.0 plus the planned channel's effect, reason and touches; 1.2 gives
# reasons only for the customers acted on, export.reasons). Changing
# this list means a new schema version (a major bump when a
# column is renamed or removed) and a note for every CRM team that loads the file.
PINNED = [
    "customer_id", "as_of", "p_purchase", "p_lapse", "expected_premium", "contact_value", "priority_tier",
    "rule_quadrant", "rule_quadrant_zh", "ml_quadrant", "ml_quadrant_zh", "value_tier", "value_tier_zh",
    "closeness", "closeness_zh", "behaviour", "behaviour_zh", "recommended_channel", "next_contact_date",
    "suppressed", "suppress_reason", "channel_uplift_purchase", "channel_uplift_lapse", "plan_reason",
    "touches_planned", "reason_for_1", "reason_for_2", "reason_for_3", "reason_against_1",
    "reason_against_2", "reason_against_3", "model_version_purchase", "model_version_lapse",
    "model_version_value", "mlflow_run_id",
]
AS_OF = dt.date(2026, 9, 30)


def test_score_file_columns_are_pinned() -> None:
    assert score_file.SCHEMA_VERSION == "1.2"
    assert score_file.NAMES == PINNED
    schema = score_file.json_schema()
    assert schema["required"] == PINNED and schema["additionalProperties"] is False


def test_score_file_docs_are_current() -> None:
    assert (REPO / "docs/score_file.md").read_text(encoding="utf-8") == score_file.render_markdown(), \
        "docs/score_file.md is stale: run `make docs`"
    assert (REPO / "docs/score_file.schema.json").read_text(encoding="utf-8") == score_file.render_json_schema()


def sample_delivery(n: int = 300, seed: int = 0, as_of: dt.date = AS_OF) -> pd.DataFrame:
    """Rows that satisfy the score-file schema, Chinese text included."""
    rng = np.random.default_rng(seed)
    quad = rng.choice(sg.QUADRANTS, n)
    supp = rng.random(n) < 0.1
    df = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(n)], "as_of": as_of,
        "p_purchase": rng.random(n) * 0.2, "p_lapse": rng.random(n) * 0.05, "expected_premium": rng.random(n) * 1e4,
        "contact_value": rng.normal(100, 50, n), "priority_tier": rng.choice(sg.TIERS, n),
        "rule_quadrant": quad, "rule_quadrant_zh": [sg.QUADRANT_ZH[q] for q in quad],
        "ml_quadrant": quad, "ml_quadrant_zh": [sg.QUADRANT_ZH[q] for q in quad],
        "value_tier": "high", "value_tier_zh": "高价值", "closeness": "warm", "closeness_zh": "温和",
        "behaviour": "active", "behaviour_zh": "活跃",
        "recommended_channel": np.where(supp, None, "phone"),
        "next_contact_date": [None if s else as_of + dt.timedelta(days=int(d)) for s, d in
                              zip(supp, rng.integers(0, 30, n), strict=True)],
        "suppressed": supp, "suppress_reason": np.where(supp, "opt_out", None),
        "channel_uplift_purchase": np.where(supp, np.nan, 0.004),
        "channel_uplift_lapse": np.where(supp, np.nan, -0.001),
        "plan_reason": np.where(supp, None, "phone: +0.4 pt purchase, +12 CNY expected, cost 8"),
        "touches_planned": np.where(supp, 0, 2),
        **{f"reason_for_{i}": "近90天报价次数: 3 / Quotes in the last 90 days: 3" for i in (1, 2, 3)},
        **{f"reason_against_{i}": None for i in (1, 2, 3)},
        "model_version_purchase": "1", "model_version_lapse": "1", "model_version_value": "1",
        "mlflow_run_id": "0" * 32,
    })
    delivery.check_schema(df[score_file.NAMES])
    return df[score_file.NAMES]


def test_check_schema_refuses_bad_rows() -> None:
    df = sample_delivery(20)
    df.loc[3, "priority_tier"] = "P9"
    df.loc[4, "customer_id"] = df.loc[5, "customer_id"]
    with pytest.raises(UserError, match="priority_tier.*P9") as e:
        delivery.check_schema(df)
    assert "duplicate" in str(e.value)


def test_check_schema_refuses_nan_infinite_and_impossible_probabilities() -> None:
    """Issue 23 (ML Test Score): the export's last guard before a CRM reads a number."""
    df = sample_delivery(20)
    df["p_purchase"] = df["p_purchase"].astype(float)
    df.loc[2, "p_purchase"] = np.nan
    df.loc[3, "p_lapse"] = 1.5
    df.loc[4, "contact_value"] = np.inf
    with pytest.raises(UserError) as e:
        delivery.check_schema(df)
    text = str(e.value)
    assert "p_lapse: 1 probabilit(ies) outside [0, 1]" in text and "contact_value: 1 NaN or infinite" in text
    assert "p_purchase" in text


def test_reasons_are_readable_and_signed() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"n_quote_90d": rng.poisson(1, 2000).astype(float), "noise": rng.normal(size=2000),
                      "opted_out": (rng.random(2000) < 0.1).astype(float)})
    y = (rng.random(2000) < 1 / (1 + np.exp(-(X["n_quote_90d"] - 2 * X["opted_out"] - 1)))).astype(int)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 1},
                        lgb.Dataset(X, y), num_boost_round=30)
    contrib = reasons.contributions(booster, X)
    assert contrib.shape == X.shape
    dictionary = {"n_quote_90d": {"dtype": "int", "en": "Quotes in the last 90 days", "zh": "近90天报价次数"},
                  "opted_out": {"dtype": "bool", "en": "Has opted out", "zh": "曾要求不再联系"},
                  "noise": {"dtype": "float", "en": "Noise", "zh": "噪声"}}
    why = reasons.top_reasons(contrib, X, dictionary, k=3)
    i = int(np.argmax(contrib["n_quote_90d"].to_numpy()))
    assert why.loc[i, "reason_for_1"] == f"Quotes in the last 90 days: {int(X.loc[i, 'n_quote_90d'])} / " \
                                         f"近90天报价次数: {int(X.loc[i, 'n_quote_90d'])}"
    j = int(np.argmin(contrib["opted_out"].to_numpy()))
    assert "Has opted out: yes / 曾要求不再联系: 是" in why.loc[j, [f"reason_against_{k}" for k in (1, 2, 3)]].tolist()
    # a reason is only given in the direction the feature actually pushed
    for r in range(50):
        for k in (1, 2, 3):
            text = why.loc[r, f"reason_for_{k}"]
            if text:
                name = next(n for n, d in dictionary.items() if text.startswith(d["en"]))
                assert contrib.loc[r, name] > 0
    assert reasons.render("x", None, {"x": {"dtype": "int", "en": "Days since a quote", "zh": "距上次报价天数"}}) \
        == "Days since a quote: none / 距上次报价天数: 无"


def _explained_model() -> tuple[pd.DataFrame, Any, dict[str, dict[str, Any]]]:
    """3,000 rows of four features (a category, a flag, missing premiums), a model over them and a dictionary."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"n_quote_90d": rng.poisson(1, 3000).astype(float), "premium": rng.gamma(2, 5000, 3000),
                      "band": pd.Categorical(rng.choice(["low", "mid", "high"], 3000)), "flag": rng.random(3000) < 0.2})
    X.loc[rng.random(3000) < 0.1, "premium"] = np.nan
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X["n_quote_90d"] - X["flag"] - 1)))).astype(int)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 1},
                        lgb.Dataset(X, y), num_boost_round=30)
    from models import gbm
    from pipelines import scoring
    spec = gbm.FeatureSpec(["n_quote_90d", "premium", "flag"], {"band": ["high", "low", "mid"]})
    model = scoring.LoadedModel(booster, spec, {}, None)
    dictionary = {"premium": {"dtype": "float", "en": "Premium", "zh": "保费"}, "flag": {"dtype": "bool"},
                  "band": {"dtype": "category", "en": "Band"}}
    return X, model, dictionary


def test_reasons_in_chunks_equal_the_whole_tables_and_repeated_values_render_the_same(caplog) -> None:
    # the export explains a large book in chunks (bounded memory, progress) and caches each feature-value's text:
    # neither may change a single reason
    from models import gbm
    X, model, dictionary = _explained_model()
    booster, spec = model.booster, model.spec
    everyone = np.arange(len(X))
    whole = delivery._reasons(model, X, everyone, dictionary, chunk=10_000)
    with caplog.at_level("INFO", logger="pipelines.export"):
        chunked = delivery._reasons(model, X, everyone, dictionary, chunk=700)
    pd.testing.assert_frame_equal(chunked, whole)
    assert "reasons: 3,000 of 3,000 customers" in caplog.text
    # rows taken by position, in any order (the export's explained customers in the segment table's order)
    some = np.random.default_rng(9).permutation(len(X))[:500]
    pd.testing.assert_frame_equal(delivery._reasons(model, X, some, dictionary, chunk=70),
                                  whole.iloc[some].reset_index(drop=True))
    contrib = reasons.contributions(booster, gbm.design(X, spec))
    uncached = [[reasons.render(f, X.loc[r, f], {**dictionary}) if contrib.loc[r, f] > 1e-6 else ""
                 for f in [contrib.columns[int(np.argsort(-contrib.loc[r].to_numpy(), kind="stable")[0])]]]
                for r in range(200)]
    assert whole["reason_for_1"].head(200).tolist() == [u[0] for u in uncached]
    assert whole["reason_for_1"].str.len().gt(0).any() and whole["reason_against_1"].str.len().gt(0).any()


def test_reasons_for_the_customers_acted_on_are_a_full_exports_and_the_rest_are_empty(monkeypatch) -> None:
    # export.reasons.customers: acted explains only the tiers sales teams work through and the planned agent-led
    # touches: those rows must read exactly as in a full export, the others carry no reason
    from pipelines import scoring
    X, model, dictionary = _explained_model()
    rng = np.random.default_rng(2)
    ids = [f"C{i:05d}" for i in range(len(X))]
    seg = pd.DataFrame({"customer_id": ids, "as_of": dt.date(2026, 6, 30), "p_purchase": rng.random(len(X)),
                        "priority_tier": rng.choice(sg.TIERS, len(X), p=[0.05, 0.15, 0.3, 0.5]),
                        "channel": rng.choice(np.array(["sms", "phone", "visit", None], dtype=object), len(X))})
    scoring_rows = X.assign(customer_id=ids).sample(frac=1.0, random_state=3)  # looked up by id, not by position
    monkeypatch.setattr(scoring, "load_model", lambda *_a, **_k: model)
    why = [f"reason_{s}_{i}" for s in ("for", "against") for i in (1, 2, 3)]
    names = ["customer_id", "as_of", "p_purchase", "priority_tier", *why, "mlflow_run_id"]
    entries = [{"name": k, **v} for k, v in dictionary.items()]
    registry: dict[str, Any] = {"models": {}, "run_id": "0" * 32}
    full = delivery.build_scores(seg, scoring_rows, entries, registry, columns=names)
    mask = reasons.to_explain(seg["priority_tier"], seg["channel"], ["P1", "P2"], ["phone", "visit", "event"])
    part = delivery.build_scores(seg, scoring_rows, entries, registry, columns=names, explain=mask)
    expected = seg["priority_tier"].isin(["P1", "P2"]) | seg["channel"].isin(["phone", "visit"])
    assert (mask == expected.to_numpy()).all() and 0 < mask.sum() < len(seg)
    pd.testing.assert_frame_equal(part[mask], full[mask])
    assert part.loc[~mask, why].isna().all().all() and full.loc[~mask, "reason_for_1"].notna().any()
    pd.testing.assert_frame_equal(part.drop(columns=why), full.drop(columns=why))
    none = reasons.to_explain(seg["priority_tier"], None, [], ["phone"])  # no plan, no tiers: no one explained
    assert not none.any()
    empty = delivery.build_scores(seg, scoring_rows, entries, registry, columns=names, explain=none)
    assert empty[why].isna().all().all() and len(empty) == len(seg)


# ---------------------------------------------------------------- the manifest commit protocol

def _deliver(folder: Path, df: pd.DataFrame, tag: str) -> None:
    target = delivery.score_paths(AS_OF, folder)
    with staged_outputs(marker=target["manifest"]) as out:
        staged = {"csv": out.path(target["csv"]), "parquet": out.path(target["parquet"])}
        digests = delivery.write_files(df, staged["csv"], staged["parquet"], ",")
        out.json({"tag": tag, "rows": len(df), "files": {k: {"name": target[k].name, "sha256": digests[k]}
                                                          for k in staged}}, target["manifest"])


def _consistent(folder: Path) -> str:
    """'none' when no manifest (not ready), else the manifest's tag after checking every file against it."""
    target = delivery.score_paths(AS_OF, folder)
    if not target["manifest"].exists():
        return "none"
    m = json.loads(target["manifest"].read_text(encoding="utf-8"))
    for f in m["files"].values():
        assert tracking.fingerprint(folder / f["name"]) == f["sha256"], f"{f['name']} disagrees with its manifest"
    return str(m["tag"])


def test_a_publish_interrupted_at_any_point_never_leaves_a_disagreeing_manifest(tmp_path: Path, monkeypatch) -> None:
    old, new = sample_delivery(50, seed=1), sample_delivery(60, seed=2)
    real_replace = os.replace
    outcomes = set()
    for fail_at in range(4):  # 3 renames (csv, parquet, manifest last) and one run that completes
        folder = tmp_path / f"run{fail_at}"
        folder.mkdir()
        _deliver(folder, old, "old")
        calls = {"n": 0}

        def flaky(src: object, dst: object, _fail_at: int = fail_at, _calls: dict = calls) -> None:
            if _calls["n"] == _fail_at:
                raise OSError("killed")
            _calls["n"] += 1
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "replace", flaky)
        with contextlib.suppress(OSError):
            _deliver(folder, new, "new")
        monkeypatch.setattr(os, "replace", real_replace)
        outcomes.add(_consistent(folder))
    assert outcomes == {"none", "new"}  # the old manifest is gone before any file moves


def test_a_failure_while_writing_leaves_the_previous_delivery_untouched(tmp_path: Path) -> None:
    _deliver(tmp_path, sample_delivery(40), "old")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    target = delivery.score_paths(AS_OF, tmp_path)
    with pytest.raises(RuntimeError), staged_outputs(marker=target["manifest"]) as out:
        out.path(target["csv"]).write_text("partial")
        raise RuntimeError("disk full")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert _consistent(tmp_path) == "old"


def test_read_delivery_refuses_files_that_disagree_with_the_manifest(tmp_path: Path) -> None:
    df = sample_delivery(30)
    target = delivery.score_paths(AS_OF, tmp_path)
    with staged_outputs(marker=target["manifest"]) as out:
        staged = {"csv": out.path(target["csv"]), "parquet": out.path(target["parquet"])}
        digests = delivery.write_files(df, staged["csv"], staged["parquet"], ",")
        out.json({"rows": len(df), "files": {k: {"name": target[k].name, "sha256": digests[k]}
                                             for k in staged}}, target["manifest"])
    got, _ = delivery.read_delivery(AS_OF, tmp_path)
    assert len(got) == 30
    with target["csv"].open("a", encoding="utf-8") as fh:
        fh.write("tampered\n")
    with pytest.raises(InputError, match="does not match its manifest"):
        delivery.read_delivery(AS_OF, tmp_path)
    with pytest.raises(InputError, match="no complete delivery"):
        delivery.read_delivery(AS_OF + dt.timedelta(days=1), tmp_path)


def test_the_files_written_side_by_side_are_the_files_written_one_after_another(tmp_path: Path) -> None:
    """``write_files`` writes the Parquet file in a thread beside the CSV and hashes both at once: the same bytes
    and digests as writing and hashing them in turn."""
    df = sample_delivery(300, seed=3)
    digests = delivery.write_files(df, tmp_path / "a.csv", tmp_path / "a.parquet", ";")
    delivery.write_csv(df, tmp_path / "b.csv", ";")
    df.to_parquet(tmp_path / "b.parquet", index=False)
    for kind in ("csv", "parquet"):
        assert (tmp_path / f"a.{kind}").read_bytes() == (tmp_path / f"b.{kind}").read_bytes()
        assert digests[kind] == tracking.fingerprint(tmp_path / f"b.{kind}")


def test_a_parquet_write_that_fails_beside_the_csv_stops_the_delivery(tmp_path: Path, monkeypatch) -> None:
    """An error in the thread (a full disk) is raised to the caller, who leaves the previous delivery as it was."""
    def full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OSError, match="No space left"):
        delivery.write_files(sample_delivery(20), tmp_path / "a.csv", tmp_path / "a.parquet", ",")


def test_csv_is_utf8_with_bom_and_opens_with_the_declared_delimiter(tmp_path: Path) -> None:
    df = sample_delivery(10)
    delivery.write_csv(df, tmp_path / "s.csv", ";")
    raw = (tmp_path / "s.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and "宠爱".encode() in raw or "开发".encode() in raw
    back = pd.read_csv(tmp_path / "s.csv", sep=";", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(back.columns) == score_file.NAMES and len(back) == 10
    assert set(back["suppressed"]) <= {"true", "false"}


# ---------------------------------------------------------------- loading into databases

def _check_load(url: str, schema: str | None = None) -> None:
    df = sample_delivery(400)
    # a channel without effect can be -0.0; SQLite stores it as 0.0, which must not fail the verification
    df.loc[0, "channel_uplift_lapse"] = -0.0
    df.loc[1, "plan_reason"] = "tab\there, new\nline, back\\slash \\N, \"quoted\", 中文\r"  # COPY's structure
    df.loc[2, "plan_reason"], df.loc[3, "plan_reason"] = "", "\\."  # not null, not the end of the data
    first = crm_load.load(url, df, AS_OF, table="crm_scores_staging", schema=schema)
    assert first["rows"] == 400
    again = crm_load.load(url, df, AS_OF, table="crm_scores_staging", schema=schema)  # idempotent
    assert again["checksum"] == first["checksum"]
    other_day = sample_delivery(50, as_of=AS_OF - dt.timedelta(days=30))
    crm_load.load(url, other_day, AS_OF - dt.timedelta(days=30), table="crm_scores_staging", schema=schema)
    smaller = df.iloc[:350]  # a re-delivery without 50 customers: they leave the as_of, nothing else moves
    crm_load.load(url, smaller, AS_OF, table="crm_scores_staging", schema=schema)
    engine = sa.create_engine(url)
    t = crm_load.table_for("crm_scores_staging", schema)
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.select(t.c.as_of, sa.func.count()).group_by(t.c.as_of)).all())
        zh = conn.execute(sa.select(t.c.ml_quadrant_zh).where(t.c.customer_id == "C0000000",
                                                              t.c.as_of == AS_OF)).scalar_one()
        rows = [tuple(r) for r in conn.execute(sa.select(*[t.c[c] for c in score_file.NAMES])
                                                .where(t.c.as_of == AS_OF))]
    engine.dispose()
    assert counts == {AS_OF: 350, AS_OF - dt.timedelta(days=30): 50}
    assert zh == sg.QUADRANT_ZH[df.loc[0, "ml_quadrant"]]
    assert crm_load.checksum(rows) == crm_load.checksum(smaller)


def test_the_checksum_reads_a_row_the_same_in_every_form_a_database_gives_it_back() -> None:
    """The delivery's frame and its rows as databases return them (dates as dates or ISO text, booleans as bools
    or 0/1, null as None or NaN, negative zero as zero) give one checksum; a float one ulp away does not."""
    df = sample_delivery(50)
    df.loc[0, "channel_uplift_lapse"] = -0.0
    as_tuples = list(df.itertuples(index=False, name=None))
    kinds = list(crm_rows.KINDS.values())

    def sqlite_like(r: tuple) -> tuple:
        return tuple(v.isoformat() if k == "date" and v is not None else int(v) if k == "boolean" else
                     (0.0 if k == "number" and v == 0 else None if k == "number" and v != v else v)
                     for v, k in zip(r, kinds, strict=True))

    whole = crm_load.checksum(df)
    money = score_file.NAMES.index("expected_premium")  # a NUMERIC column comes back as Decimal
    as_decimal = [r[:money] + (Decimal(repr(r[money])),) + r[money + 1:] for r in as_tuples]
    assert crm_load.checksum(as_decimal) == whole
    stamped = df.assign(as_of=pd.Timestamp(AS_OF) + pd.Timedelta(hours=9))  # a timestamp counts by its day
    assert crm_load.checksum(as_tuples) == crm_load.checksum([sqlite_like(r) for r in as_tuples]) == whole
    assert crm_load.checksum(stamped) == whole
    nudged = df.copy()
    nudged.loc[3, "p_purchase"] = np.nextafter(nudged.loc[3, "p_purchase"], 1.0)
    assert crm_load.checksum(nudged) != whole
    assert crm_load.checksum([]) == crm_load.checksum(df.iloc[:0]) == "0" * 64


def test_copy_csv_quotes_what_postgresql_would_read_as_structure_or_null() -> None:
    """Every text value is quoted (an empty string is not null; a lone ``\\.`` is not the end of the data), quotes
    are doubled, and a row's newlines stay inside its quoted field."""
    df = sample_delivery(4)
    tricky = ["a\tb,\\c\nd\r\"e\"", None, "", "\\."]
    df["plan_reason"] = tricky
    rows = list(csv.reader(io.StringIO(crm_rows.copy_csv(crm_rows.columns(df)).decode("utf-8"), newline="")))
    assert len(rows) == 4 and all(len(r) == len(score_file.NAMES) for r in rows)
    col = score_file.NAMES.index("plan_reason")
    assert [r[col] for r in rows] == ["a\tb,\\c\nd\r\"e\"", "", "", "\\."]
    text = crm_rows.copy_csv(crm_rows.columns(df)).decode("utf-8")
    assert ',"",' in text and ',"\\.",' in text  # quoted: PostgreSQL reads them as text, not null or the end
    supp = score_file.NAMES.index("suppressed")
    assert {r[supp] for r in rows} <= {"true", "false"}


def test_csv_reader_types_postgresql_csv_as_the_score_file_and_refuses_a_wrong_type() -> None:
    """The read-back parses what ``COPY ... TO STDOUT (FORMAT csv)`` writes (t/f, ISO dates, quoted text, empty
    for null) into the columns the delivery gives, so both sides have one checksum."""
    df = sample_delivery(5)
    df["plan_reason"] = ["x,y", None, "", "\\.", "two\nlines"]
    names, kinds = score_file.NAMES, list(crm_rows.KINDS.values())
    cols = crm_rows.columns(df)

    def line(i: int, **replace: str) -> str:  # one row as PostgreSQL writes it
        fields = []
        for name, arr, kind in zip(names, cols, kinds, strict=True):
            v = arr[i].as_py()
            fields.append(replace[name] if name in replace else "" if v is None else ("t" if v else "f")
                          if kind == "boolean" else '"' + v.replace('"', '""') + '"' if kind == "string" else str(v))
        return ",".join(fields) + "\n"

    data = "".join(line(i) for i in range(len(df))).encode()
    back = pa.Table.from_batches(list(crm_rows.csv_reader(io.BytesIO(data))))
    assert back.column_names == names
    assert back.column("plan_reason").to_pylist() == ["x,y", None, "", "\\.", "two\nlines"]
    whole, again = crm_rows.Checksum(), crm_rows.Checksum()
    whole.update(cols)
    again.update([back.column(n).combine_chunks() for n in names])
    assert again.hexdigest() == whole.hexdigest()
    with pytest.raises(pa.ArrowInvalid):
        list(crm_rows.csv_reader(io.BytesIO(line(0, p_purchase="n/a").encode())))


def test_sqlite_load_is_idempotent_and_verified(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(crm_load, "CHUNK", 64)  # inserts and the read-back in several chunks
    _check_load(f"sqlite:///{tmp_path / 'crm.db'}")


def test_the_load_checksum_is_the_rows_as_a_multiset() -> None:
    # the delivery and the read-back are summed chunk by chunk in whatever order the database returns rows:
    # the order must not matter, while any changed, missing or repeated row must
    df = sample_delivery(300)
    rows = list(df[score_file.NAMES].itertuples(index=False, name=None))
    whole = crm_load.checksum(df)
    assert crm_load.checksum(rows[::-1]) == crm_load.checksum(df.sample(frac=1.0, random_state=1)) == whole
    changed = df.copy()
    changed.loc[7, "contact_value"] += 1e-6
    assert len({whole, crm_load.checksum(changed), crm_load.checksum(rows[1:]), crm_load.checksum(rows + rows[:1]),
                crm_load.checksum(rows[1:] + rows[2:3])}) == 5


def test_a_failed_verification_rolls_the_load_back(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    df = sample_delivery(100)
    crm_load.load(url, df, AS_OF, table="crm_scores_staging")
    real = crm_load._insert  # a database that stores a value differently (rounded): same count, other values
    monkeypatch.setattr(crm_load, "_insert", lambda conn, t, df: real(conn, t, df.assign(
        p_purchase=df["p_purchase"].where(df.index != df.index[40], df["p_purchase"].round(2)))))
    with pytest.raises(UserError, match="rolled back: checksum"):
        crm_load.load(url, sample_delivery(80, seed=9), AS_OF, table="crm_scores_staging")
    monkeypatch.setattr(crm_load, "_insert", real)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM crm_scores_staging")).scalar_one()
    engine.dispose()
    assert n == 100  # the earlier load is intact


def test_a_value_read_back_in_another_type_is_a_message_and_a_rollback(tmp_path: Path, monkeypatch) -> None:
    """A database that gives back text where the score file has a number (SQLite keeps what it is given)."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    real = crm_load._insert

    def text_in_a_number(conn, t, df):
        real(conn, t, df)
        conn.exec_driver_sql('UPDATE crm_scores_staging SET p_purchase = \'n/a\' WHERE customer_id = \'C0000003\'')

    monkeypatch.setattr(crm_load, "_insert", text_in_a_number)
    with pytest.raises(UserError, match="rolled back: the rows read back from crm_scores_staging do not have"):
        crm_load.load(url, sample_delivery(30), AS_OF, table="crm_scores_staging")
    assert _rows_in(url, "crm_scores_staging") == 0


def _rows_in(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_a_driver_error_without_a_message_is_still_a_one_line_message() -> None:
    assert crm_load._brief(RuntimeError()) == "RuntimeError: "
    assert crm_load._brief(ValueError("first\nsecond")) == "ValueError: first"


def test_a_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="cannot use database URL"):
        crm_load.load("nosuchdb://x", sample_delivery(5), AS_OF, table="t")
    assert crm_load.redact("postgresql://bob:secret@host/db") == "postgresql://bob:***@host/db"


def test_postgresql_load_is_idempotent_and_verified(postgres: str, monkeypatch) -> None:
    monkeypatch.setattr(crm_load, "CHUNK", 64)  # COPY and the server-side read-back in several chunks
    _check_load(postgres, schema="staging")
    engine = sa.create_engine(postgres)
    with engine.connect() as conn:
        cols = conn.execute(sa.text("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_schema = 'staging' AND table_name = 'crm_scores_staging' "
                                    "ORDER BY ordinal_position")).all()
        pk = conn.execute(sa.text(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'staging.crm_scores_staging'::regclass "
            "AND i.indisprimary")).scalars().all()
    engine.dispose()
    assert [c for c, _ in cols] == score_file.NAMES
    # a row COPY refuses (here a repeated key) is a message and a rollback, not the driver's traceback
    twice = pd.concat([sample_delivery(20), sample_delivery(20).iloc[:1]], ignore_index=True)
    with pytest.raises(UserError, match="failed and was rolled back: UniqueViolation"):
        crm_load.load(postgres, twice, AS_OF, table="crm_scores_staging", schema="staging")
    engine = sa.create_engine(postgres)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM staging.crm_scores_staging WHERE as_of = :d"), {"d": AS_OF})
        assert n.scalar_one() == 350  # what _check_load left, untouched
    engine.dispose()
    assert dict(cols)["as_of"] == "date" and dict(cols)["p_purchase"] == "double precision"
    assert set(pk) == {"customer_id", "as_of"}


def test_postgresql_text_where_the_score_file_has_a_number_is_a_message_and_a_rollback(postgres: str) -> None:
    """An existing CRM table whose p_purchase is text: COPY takes the numbers as text, the CSV read-back finds a
    value that is no number, and the load stops and rolls back, leaving the connection usable."""
    engine = sa.create_engine(postgres)
    t = crm_load.table_for("crm_text_staging", None)
    t.c.p_purchase.type = sa.Text()
    with engine.begin() as conn:
        t.metadata.create_all(conn)
        conn.execute(sa.text("CREATE FUNCTION na_first() RETURNS trigger AS $$ BEGIN IF NEW.customer_id = "
                             "'C0000003' THEN NEW.p_purchase := 'n/a'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(sa.text("CREATE TRIGGER na BEFORE INSERT ON crm_text_staging FOR EACH ROW EXECUTE FUNCTION "
                             "na_first()"))
    engine.dispose()
    with pytest.raises(UserError, match="rolled back: the rows read back from crm_text_staging do not have"):
        crm_load.load(postgres, sample_delivery(30), AS_OF, table="crm_text_staging")
    assert _rows_in(postgres, "crm_text_staging") == 0


def test_reasons_format_numbers_to_their_scale_and_never_repeat_a_half() -> None:
    assert [reasons.number(x) for x in (0.0034, 0.25, 0.5, 3.14159, 12.0, 99.456, 1234.5, 2_500_000.0, 0.0)] == \
        ["0.0034", "0.25", "0.5", "3.14", "12", "99.46", "1,234", "2,500,000", "0"]
    plain = {"Contract": {"dtype": "category", "en": "Contract", "zh": "Contract"},
             "MonthlyCharges": {"dtype": "float", "en": "Monthly charges", "zh": "Monthly charges"},
             "tenure": {"dtype": "int", "en": "Months as a customer", "zh": "客户月数"}}
    contract = reasons.render("Contract", "Month-to-month", plain)
    assert contract == "Contract: Month-to-month / 字段“Contract”的取值: Month-to-month"
    assert contract.split(" / ")[0] != contract.split(" / ")[1]
    assert reasons.render("MonthlyCharges", 1234.5678, plain) == \
        "Monthly charges: 1,235 / 字段“MonthlyCharges”的取值: 1,235"
    assert reasons.render("tenure", 12345.0, plain) == "Months as a customer: 12,345 / 客户月数: 12,345"
    assert reasons.render("undescribed", 0.0123, {}).startswith("undescribed: 0.012 / 字段“undescribed”")
    labelled = {"Contract": {"dtype": "category", "en": "Contract type", "zh": "合同类型",
                             "values": {"Month-to-month": {"en": "month to month", "zh": "按月"}}}}
    assert reasons.render("Contract", "Month-to-month", labelled) == "Contract type: month to month / 合同类型: 按月"
    assert reasons.render("Contract", "Two year", labelled) == "Contract type: Two year / 合同类型: Two year"


def test_the_export_receipt_leaves_out_what_is_bound_to_the_run() -> None:
    """data/reports/export.json is the export stage's DVC output: the same scores delivered by another run (another
    MLflow run id, other model versions, another clone) give the same receipt; any changed score does not."""
    from pipelines.delivery import receipt

    df = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "p_purchase": [0.1, 0.2, 0.3],
                       "priority_tier": ["P1", "P2", "P2"], "suppressed": [False, True, False],
                       "model_version_purchase": "1", "mlflow_run_id": "aaa"})
    manifest = {"as_of": "2026-09-30", "profile": "book"}
    first = receipt(df, manifest)
    again = receipt(df.assign(model_version_purchase="7", mlflow_run_id="bbb"), manifest)
    assert first == again
    assert first["rows"] == 3 and first["tiers"] == {"P1": 1, "P2": 2} and first["suppressed"] == 1
    assert first["run_bound_columns"] == ["model_version_purchase", "mlflow_run_id"]
    changed = receipt(df.assign(p_purchase=[0.1, 0.2, 0.31]), manifest)
    assert changed["content_sha256"] != first["content_sha256"]
    json.dumps(first)  # written as JSON


def test_the_content_hash_depends_on_the_values_not_on_how_the_columns_are_stored() -> None:
    import pyarrow as pa

    from pipelines.delivery import content_sha256

    text = ["a", None, "ccc", "d"]
    whole = pd.DataFrame({"t": pd.array(text, dtype="str"), "x": [0.5, np.nan, 2.0, -0.0],
                          "d": [dt.date(2026, 9, 30)] * 4})
    one = pa.chunked_array([pa.array(text, pa.large_string())])
    two = pa.chunked_array([pa.array(text[:1], pa.large_string()), pa.array(text[1:], pa.large_string())])
    assert content_sha256(whole) == content_sha256(whole.copy())
    assert content_sha256(whole.assign(t=pd.arrays.ArrowExtensionArray(one))) == \
        content_sha256(whole.assign(t=pd.arrays.ArrowExtensionArray(two)))  # one chunk or two: the same
    assert content_sha256(whole.assign(x=[0.5, 1.0, 2.0, -0.0])) != content_sha256(whole)  # a missing value filled
    assert content_sha256(whole.assign(t=["a", "", "ccc", "d"])) != content_sha256(whole)  # null is not ""
    assert content_sha256(whole.iloc[[1, 0, 2, 3]]) != content_sha256(whole)  # row order counts
