"""The Spark engine gives the DuckDB engine's features and scores, column for column (issue 21).

Runs on a local Spark session (``local[2]``). PySpark comes with the dev dependencies and Java with
``.ci/run``; without either, these tests fail with the session's message rather than skip.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from features.snapshots.definitions import KEYS, ROW_ORDER, dictionary
from features.snapshots.dialect import DUCKDB, SPARK
from features.snapshots.plan import snapshot_plan
from features.snapshots.query import features_frame
from pipelines.interim import register_tables
from pipelines.params import Params
from tests.conftest import repo_params_raw

pytestmark = pytest.mark.xdist_group("spark")
H = 90


@pytest.fixture(scope="session")  # one JVM per worker, however xdist interleaves the modules
def spark(small_params: Params):  # noqa: ANN201
    from pipelines import spark_engine

    session = spark_engine.session(small_params.features.engine.spark.model_copy(update={"shuffle_partitions": 2}),
                                   "contact-priority-tests")
    yield session
    session.stop()


def _duckdb(interim: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    register_tables(con, interim)
    return con


def test_both_engines_sample_the_same_customers(spark) -> None:
    ids = [f"C{i:07d}" for i in range(20_000)] + ["客户-001", "x", "", "O'Brien"]
    frame = pd.DataFrame({"customer_id": ids})
    pred = {d.kind: d.sample_predicate(0.3) for d in (DUCKDB, SPARK)}
    con = duckdb.connect()
    con.register("ids", frame)
    by_duckdb = {r[0] for r in con.execute(f"SELECT customer_id FROM ids WHERE {pred['duckdb']}").fetchall()}
    spark.createDataFrame(frame).createOrReplaceTempView("ids")
    by_spark = {r[0] for r in spark.sql(f"SELECT customer_id FROM ids WHERE {pred['spark']}").collect()}
    assert by_duckdb == by_spark
    assert 0.28 < len(by_duckdb) / len(ids) < 0.32


def test_spark_features_equal_duckdb_column_for_column(spark, interim: Path, small_params: Params,
                                                        tmp_path: Path) -> None:
    """Values, nulls and types, on training snapshots (labels known, customers sampled) and the scoring one."""
    from pipelines import spark_engine

    n = len(pd.read_parquet(interim / "customers.parquet", columns=["customer_id"]))
    fp = small_params.features.model_copy(update={"n_train_snapshots": 3, "snapshot_step_months": 2,
                                                  "train_sample_max_customers": n // 2})
    plan = snapshot_plan(small_params.book.as_of, fp, H)
    con = _duckdb(interim)
    want = features_frame(con, fp, plan, H, n_customers=n).sort_values(ROW_ORDER).reset_index(drop=True)
    spark_engine.register_tables(spark, interim.as_posix())
    out = (tmp_path / "features").as_posix()
    rows = list(spark_engine.write_snapshots(spark, fp, plan, H, n // 2 / n, out))
    got = con.execute(spark_engine.collect_sql(out, spark_engine.output_columns(fp))).df()
    assert list(got.columns) == list(want.columns)
    assert (got.dtypes == want.dtypes).all(), got.dtypes[got.dtypes != want.dtypes]
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # not vacuous: sampled training snapshots, labels, and features with signal
    assert [r["rows"] for r in rows] == want.groupby("snapshot_date").size().tolist()
    assert rows[0]["rows"] < 0.7 * rows[-1]["rows"] and rows[-1]["scoring"]
    assert want["purchase_h"].sum() > 5 and want["n_phone_365d"].sum() > 0 and want["open_quote"].any()
    assert want["days_since_last_contact"].notna().any() and want["reached_rate_365d"].isna().any()


def _stage_params(root: Path, kind: str) -> None:
    raw = repo_params_raw()
    raw["book"]["profile"] = "tiny"
    raw["book"]["profiles"]["tiny"]["n_customers"] = 1500
    raw["features"]["n_train_snapshots"] = 2
    raw["features"]["engine"]["kind"] = kind
    raw["features"]["engine"]["spark"]["shuffle_partitions"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_features_stage_with_engine_spark_writes_the_duckdb_table(spark, interim: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`features.engine.kind: spark` through the stage's CLI: the same Parquet table, schema and rows."""
    from pipelines import features

    tables = {}
    for kind in ("duckdb", "spark"):
        root = tmp_path / kind
        (root / "data").mkdir(parents=True)
        (root / "data" / "interim").symlink_to(interim, target_is_directory=True)
        _stage_params(root, kind)
        monkeypatch.chdir(root)
        assert features.cli(["--params", "params.yaml"]) == 0
        tables[kind] = pq.read_table(root / "data/features/features.parquet")
        report = json.loads((root / "data/reports/features.json").read_text(encoding="utf-8"))
        assert report["n_snapshots"] == 3 and report["rows"] == tables[kind].num_rows
    assert tables["spark"].schema.equals(tables["duckdb"].schema)
    assert tables["spark"].equals(tables["duckdb"])
    assert spark.sparkContext._jsc is not None  # the stage left the caller's session open


def _model_set(feats: pd.DataFrame, folder: Path, small_params: Params) -> tuple[Path, Path]:
    """A small model set saved as the train and calibrate stages save theirs (native text and JSON)."""
    from models import calibration, gbm

    train = feats[feats["purchase_h"].notna()]
    spec = gbm.feature_spec(train, dictionary(small_params.features, H))
    gp = small_params.train.gbm.model_copy(update={"num_threads": 1})
    X = gbm.design(train, spec)
    models, cals = folder / "models", folder / "calibrators"
    holders = train["n_inforce"] > 0
    for name, rows, y, objective in (
            ("purchase", slice(None), train["purchase_h"], "binary"),
            ("lapse", holders, train["lapse_h"], "binary"),
            ("value", slice(None), np.log1p(train["premium_h"]), "regression")):
        booster = gbm.fit_rounds(X[rows], np.asarray(y[rows], float), gp, objective, 30)
        (models / name).mkdir(parents=True)
        booster.save_model(str(models / name / "model.txt"))
        meta = {"features": spec.to_dict(), "target_transform": "log1p" if name == "value" else None}
        (models / name / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if name != "value":
            cals.mkdir(exist_ok=True)
            cal = calibration.fit("isotonic", gbm.predict(booster, X[rows]), np.asarray(y[rows], int))
            (cals / f"{name}.json").write_text(json.dumps(cal), encoding="utf-8")
    return models, cals


def test_spark_scores_equal_the_pipeline_scores(spark, interim: Path, small_params: Params, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The segment stage's Spark scoring and the score-partition job give `scoring.score`'s numbers exactly."""
    from pipelines import scoring, spark_score

    fp = small_params.features.model_copy(update={"n_train_snapshots": 4, "snapshot_step_months": 1})
    plan = snapshot_plan(small_params.book.as_of, fp, H)
    feats = features_frame(_duckdb(interim), fp, plan, H)
    models, cals = _model_set(feats, tmp_path, small_params)
    rows = feats[feats["snapshot_date"] == pd.Timestamp(small_params.book.as_of)].reset_index(drop=True)
    rows.index = rows.index + 1000  # the caller's index comes back
    want = scoring.score(rows, models, cals)
    got = spark_score.score_pandas(rows, small_params.features.engine.spark, models, cals, spark=spark)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert want["p_purchase"].nunique() > 10 and (want["p_lapse"] > 0).any() and (want["expected_premium"] > 0).any()
    # the cluster job: a feature table in, score partitions out
    feats.to_parquet(tmp_path / "features.parquet", index=False)
    _stage_params(tmp_path, "spark")
    monkeypatch.chdir(tmp_path)
    assert spark_score.cli(["--params", "params.yaml", "--features", str(tmp_path / "features.parquet"),
                            "--output", str(tmp_path / "scores"), "--models", str(models),
                            "--calibrators", str(cals)]) == 0
    parts = list((tmp_path / "scores").glob("snapshot_date=*/*.parquet"))
    assert parts and all(p.parent.name == f"snapshot_date={small_params.book.as_of}" for p in parts)
    job = pd.concat([pd.read_parquet(p) for p in parts]).set_index("customer_id").loc[rows["customer_id"]]
    np.testing.assert_array_equal(job["p_purchase"].to_numpy(), want["p_purchase"].to_numpy())
    np.testing.assert_array_equal(job["expected_premium"].to_numpy(), want["expected_premium"].to_numpy())


def test_a_missing_table_is_named(spark, tmp_path: Path) -> None:
    from pipelines import spark_engine
    from pipelines.errors import InputError

    with pytest.raises(InputError, match=r"customers\.parquet not found: run the validate stage"):
        spark_engine.register_tables(spark, tmp_path.as_posix())


def test_an_output_the_stage_cannot_read_back_is_refused_before_spark_starts(tmp_path: Path, capsys,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import features

    (tmp_path / "data" / "interim").mkdir(parents=True)
    _stage_params(tmp_path, "spark")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    raw["features"]["engine"]["spark"]["output"] = "hdfs://lake/features"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert features.cli(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "features.engine.spark.output is 'hdfs://lake/features'" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "features").exists()


def test_the_spark_submit_launcher_names_its_jobs() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, str(REPO / "deploy" / "spark_submit.py"), "nonsense"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "deploy/spark_submit.py {features|score}" in proc.stderr


def test_the_cluster_job_leaves_the_table_where_spark_wrote_it(spark, interim: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`--no-collect`: partitioned Parquet at spark.output (any URI on a cluster), nothing under data/."""
    from pipelines import features

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "interim").symlink_to(interim, target_is_directory=True)
    _stage_params(tmp_path, "duckdb")
    monkeypatch.chdir(tmp_path)
    assert features.cli(["--params", "params.yaml", "--no-collect"]) == 2
    assert "--no-collect is for the Spark engine's cluster job" in capsys.readouterr().err
    _stage_params(tmp_path, "spark")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    raw["features"]["engine"]["spark"]["output"] = (tmp_path / "lake" / "features").as_uri()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert features.cli(["--params", "params.yaml", "--no-collect"]) == 0
    parts = sorted(p.name for p in (tmp_path / "lake" / "features").glob("snapshot_date=*"))
    assert len(parts) == 3 and parts[-1] == f"snapshot_date={raw['book']['as_of']}"
    assert not (tmp_path / "data" / "features").exists()


@pytest.mark.slow
def test_a_100k_customer_benchmark_book_gives_the_same_features(spark, tmp_path: Path, small_params: Params) -> None:
    """The benchmark's contract-shaped 100k-customer / 2M-contact book: the scoring snapshot and a sampled,
    labelled training snapshot equal on both engines (the tiny book cannot reach every count or value)."""
    import importlib.util
    import sys

    from features.snapshots.dialect import SPARK as spark_dialect
    from features.snapshots.plan import Snapshot
    from features.snapshots.query import materialise, snapshot_query
    from pipelines import spark_engine
    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("features_bench", REPO / "benchmarks" / "features_bench.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    bench.make_book(100_000, tmp_path / "book")
    fp = small_params.features.model_copy(update={"train_sample_max_customers": 30_000})
    as_of = bench.AS_OF
    snaps = [Snapshot(as_of - dt.timedelta(days=180), labels_known=True, scoring=False),
             Snapshot(as_of, labels_known=False, scoring=True)]
    con = _duckdb(tmp_path / "book")
    spark_engine.register_tables(spark, (tmp_path / "book").as_posix())
    for snap in snaps:
        frac = None if snap.scoring else 0.3
        duck_q = snapshot_query(fp, snap.date, H, snap.labels_known, frac)
        (want_sql,) = materialise(con, duck_q, 1, set())
        want = con.execute(want_sql, duck_q.args(want_sql)).df().sort_values(KEYS).reset_index(drop=True)
        spark_q = snapshot_query(fp, snap.date, H, snap.labels_known, frac, dialect=spark_dialect)
        (got_sql,) = materialise(spark_engine.SparkConnection(spark), spark_q, 1, set())
        out = (tmp_path / f"spark_{snap.date}").as_posix()
        spark.sql(got_sql, args=spark_q.args(got_sql)).write.parquet(out)
        got = con.execute(f"SELECT * FROM read_parquet('{out}/*.parquet') ORDER BY customer_id").df()
        assert len(want) > (20_000 if frac else 90_000)
        assert (got.dtypes == want.dtypes).all(), got.dtypes[got.dtypes != want.dtypes]
        pd.testing.assert_frame_equal(got, want, check_exact=True)
