"""Reading only the snapshots a stage needs gives exactly the rows (and dtypes) of filtering the whole table."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.intake.capabilities import for_source
from pipelines import scoring

DATES = [dt.date(2026, 3, 31), dt.date(2026, 6, 30), dt.date(2026, 9, 30)]


def _table(path: Path) -> pd.DataFrame:
    """Three snapshots in several row groups, the last unlabelled (the as-of snapshot), in id order per snapshot."""
    rng = np.random.default_rng(0)
    parts = []
    for d in DATES:
        n = 700
        labelled = d != DATES[-1]
        parts.append(pd.DataFrame({
            "customer_id": [f"C{i:05d}" for i in rng.choice(5000, n, replace=False)], "snapshot_date": d,
            "n_quote_90d": rng.poisson(1, n).astype("int32"),
            "purchase_h": pd.array(rng.integers(0, 2, n) if labelled else [None] * n, dtype="Int32"),
            "lapse_h": pd.array(rng.integers(0, 2, n) if labelled else [None] * n, dtype="Int32"),
            "premium_h": np.where(labelled, rng.gamma(2, 5000, n), np.nan)}))
    df = pd.concat(parts, ignore_index=True)
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)  # as DuckDB writes it
    pq.write_table(table, path, row_group_size=500)
    return pd.read_parquet(path)


def test_reading_snapshots_equals_filtering_the_whole_table(tmp_path: Path) -> None:
    whole = _table(tmp_path / "features.parquet")
    dates = pd.to_datetime(whole["snapshot_date"]).dt.date
    book = for_source("tables", synthetic=False)
    for wanted in ([DATES[-1]], [DATES[0], DATES[-1]], []):
        got = scoring.read_snapshots(tmp_path / "features.parquet", wanted)
        pd.testing.assert_frame_equal(got, whole[dates.isin(wanted)].reset_index(drop=True))
    got = scoring.read_scoring_rows(tmp_path / "features.parquet", DATES[-1], book)
    pd.testing.assert_frame_equal(got, scoring.scoring_rows(whole, DATES[-1], book).reset_index(drop=True))


def test_the_labelled_rows_read_as_they_filter_from_the_whole_table_labels_as_floats(tmp_path: Path) -> None:
    # training never sees the unlabelled as-of snapshot; its labels keep the float dtype they have beside it, so
    # the models and the held-out score file stay byte-identical
    whole = _table(tmp_path / "features.parquet")
    got = scoring.read_labelled(tmp_path / "features.parquet", for_source("tables", synthetic=False))
    expected = whole[whole["purchase_h"].notna()].reset_index(drop=True)
    assert len(got) == 2 * 700 and whole["purchase_h"].dtype == "float64"
    pd.testing.assert_frame_equal(got, expected)


def test_the_labelled_rows_of_some_dates_read_as_they_filter_from_the_labelled_rows(tmp_path: Path) -> None:
    """uplift reads only the dates it gives a role: the same rows, order and dtypes as filtering afterwards."""
    _table(tmp_path / "features.parquet")
    path, book = tmp_path / "features.parquet", for_source("tables", synthetic=False)
    assert scoring.snapshot_dates(path) == DATES
    labelled = scoring.read_labelled(path, book)
    dates = pd.to_datetime(labelled["snapshot_date"]).dt.date
    for wanted in ([DATES[1]], [DATES[0], DATES[2]], DATES, []):
        got = scoring.read_labelled(path, book, wanted)
        pd.testing.assert_frame_equal(got, labelled[dates.isin(wanted)].reset_index(drop=True))
    assert len(scoring.read_labelled(path, book, [DATES[2]])) == 0  # the as-of snapshot has no labelled row


def test_the_labelled_rows_read_as_one_frame_a_stage_can_add_columns_to(tmp_path: Path) -> None:
    """Casting the labels must not split the frame into a block per column: with the feature table's ~140
    columns every column a stage then adds (uplift adds several) warned of a fragmented frame."""
    rng = np.random.default_rng(1)
    n = 300
    wide = pd.DataFrame({f"n_{i}": rng.poisson(1, n).astype("int32") for i in range(120)})
    wide["snapshot_date"] = DATES[0]
    wide["purchase_h"] = pd.array(rng.integers(0, 2, n), dtype="Int32")
    wide["lapse_h"] = pd.array(rng.integers(0, 2, n), dtype="Int32")
    pq.write_table(pa.Table.from_pandas(wide, preserve_index=False), tmp_path / "features.parquet")
    got = scoring.read_labelled(tmp_path / "features.parquet", for_source("tables", synthetic=False))
    assert got["purchase_h"].dtype == "float64" and list(got.columns) == list(wide.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        for i in range(5):
            got[f"added_{i}"] = 1.0


def test_models_sharing_a_feature_spec_share_one_matrix_and_predict_as_alone(monkeypatch) -> None:
    """``predict_each`` builds one design matrix for consecutive models with the same spec (one at a time alive),
    and every output equals the model's own ``predict``."""
    from models import gbm

    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                       "band": rng.choice(["a", "b"], n).astype(object)})
    shared = gbm.FeatureSpec(["x", "z"], {"band": ["a", "b"]})
    other = gbm.FeatureSpec(["z"], {})
    params = gbm.GBMParams(learning_rate=0.1, num_leaves=8, min_child_samples=10, feature_fraction=1.0,
                           bagging_fraction=1.0, bagging_freq=0, lambda_l2=0.0, max_rounds=30,
                           early_stopping_rounds=10, seed=1, num_threads=1)

    def model(spec: gbm.FeatureSpec, y: np.ndarray, cal: dict | None) -> scoring.LoadedModel:
        X = gbm.design(df, spec)
        booster = gbm.fit(X[:1500], y[:1500], X[1500:], y[1500:], params, "binary")
        return scoring.LoadedModel(booster, spec, {"target_transform": None}, cal)

    y1 = (df["x"] + (df["band"] == "a") > 0.5).to_numpy(float)
    y2 = (df["x"] - df["z"] > 0).to_numpy(float)
    loaded = {"purchase": model(shared, y1, {"method": "identity"}),
              "lapse": model(shared, y2, {"method": "sigmoid", "a": 1.2, "b": -0.3}),
              "value": model(other, (df["z"] > 0).to_numpy(float), None)}
    alone = {name: m.predict(df) for name, m in loaded.items()}
    built = []
    real = gbm.matrix
    monkeypatch.setattr(gbm, "matrix", lambda frame, spec: built.append(spec) or real(frame, spec))
    got = scoring.predict_each(loaded, df)
    assert built == [shared, other]  # one for the two that share a spec, one for the other
    for name, want in alone.items():
        assert np.ptp(want) > 0.1
        np.testing.assert_array_equal(got[name], want)
    # in chunks (the last one short): one matrix per chunk and spec, no more than a chunk's rows each, the same outputs
    built.clear()
    monkeypatch.setattr(gbm, "matrix", lambda frame, spec: built.append(len(frame)) or real(frame, spec))
    chunked = scoring.predict_each(loaded, df, chunk_rows=700)
    assert built == [700, 700, 700, 700, 600, 600]
    for name, want in alone.items():
        np.testing.assert_array_equal(chunked[name], want)
    assert all(len(v) == 0 for v in scoring.predict_each(loaded, df.iloc[:0]).values())


def test_some_customers_read_as_they_filter_from_their_whole_snapshot(tmp_path: Path) -> None:
    """``read_customers`` (the export's explained customers) gives the rows and dtypes of the whole snapshot's read,
    even where the rows read hold none of a column's nulls (an integer column is float64 beside its nulls, a
    boolean one objects), and ``first_scoring_rows`` the smallest ids in id order."""
    path = tmp_path / "features.parquet"
    whole = _table(path)
    rng = np.random.default_rng(5)
    as_of = whole["snapshot_date"] == DATES[-1]
    gappy = pd.array(rng.integers(0, 9, len(whole)), dtype="Int64")
    flag = pd.array(rng.integers(0, 2, len(whole)).astype(bool), dtype="boolean")
    first_null = int(np.flatnonzero(as_of)[3])
    gappy[first_null], flag[first_null] = None, None
    table = pa.Table.from_pandas(whole.assign(gappy=gappy, flag=flag), preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path, row_group_size=500)
    snapshot = scoring.read_snapshots(path, [DATES[-1]])
    assert snapshot["gappy"].dtype == "float64" and snapshot["flag"].dtype == object
    ids = snapshot["customer_id"]
    wanted = ids.drop(index=3).sample(40, random_state=1).tolist()  # not the row with the nulls
    got = scoring.read_customers(path, DATES[-1], wanted)
    expected = snapshot[ids.isin(wanted)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert got["n_quote_90d"].dtype == "int32"  # a column without nulls keeps its integer type
    assert scoring.read_customers(path, DATES[-1], []).empty
    first = scoring.first_scoring_rows(path, DATES[-1], for_source("tables", synthetic=False), 5)
    pd.testing.assert_frame_equal(first.reset_index(drop=True),
                                  snapshot.sort_values("customer_id").head(5).reset_index(drop=True))


def test_a_snapshot_read_in_chunks_is_its_whole_read_cut_into_pieces(tmp_path: Path) -> None:
    """``snapshot_chunks`` (segment scores the as-of snapshot a chunk at a time) gives the whole snapshot's rows in
    its order and with its dtypes in every chunk, where a chunk holds none of a column's nulls too."""
    path = tmp_path / "features.parquet"
    whole = _table(path)
    rng = np.random.default_rng(7)
    gappy = pd.array(rng.integers(0, 9, len(whole)), dtype="Int64")
    flag = pd.array(rng.integers(0, 2, len(whole)).astype(bool), dtype="boolean")
    last_row = len(whole) - 1  # the as-of snapshot's last row: only the last chunk holds the nulls
    gappy[last_row], flag[last_row] = None, None
    table = pa.Table.from_pandas(whole.assign(gappy=gappy, flag=flag), preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path, row_group_size=300)  # groups straddle the days
    for day in DATES:
        snapshot = scoring.read_snapshots(path, [day])
        for chunk_rows in (1, 250, 10_000):
            chunks = list(scoring.snapshot_chunks(path, day, chunk_rows))
            assert all(c.index.equals(pd.RangeIndex(len(c))) for c in chunks)
            assert all(c.dtypes.equals(snapshot.dtypes) for c in chunks), day
            if chunk_rows < 700:
                assert len(chunks) > 1
            pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), snapshot)
    assert snapshot["gappy"].dtype == "float64" and snapshot["flag"].dtype == object
    assert list(scoring.snapshot_chunks(path, dt.date(2020, 1, 31), 100)) == []
