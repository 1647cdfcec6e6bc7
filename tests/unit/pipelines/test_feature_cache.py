"""A monthly re-run of the features stage reads back the snapshots whose inputs did not change, and writes the
table a full recompute writes, column for column: after the new month, and after a correction to an old one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from features.intake.validation import validate_book
from features.simulator.book import SyntheticBook
from features.snapshots.definitions import ROW_ORDER
from pipelines import feature_cache, features
from pipelines import interim as interim_views
from pipelines.feature_cache import Entry, _covers
from pipelines.params import EngineParams
from tests.conftest import repo_params_raw

THIS = dt.date(2026, 9, 30)  # the book's as-of
LAST = dt.date(2026, 8, 31)  # last month's run
OLD_DAY = dt.date(2026, 5, 10)  # a day in an old month that gets corrected


def as_it_stood(tables: dict[str, pd.DataFrame], day: dt.date) -> dict[str, pd.DataFrame]:
    """The export a run on ``day`` received: rows dated after it absent, later status changes not yet made."""
    end = pd.Timestamp(day)
    cus, pol, clm, con = (tables[k].copy() for k in ("customers", "policies", "claims", "contacts"))
    cus = cus[pd.to_datetime(cus["created_date"]) <= end]
    cus.loc[pd.to_datetime(cus["first_policy_date"]) > end, "first_policy_date"] = None
    pol = pol[pd.to_datetime(pol["issue_date"]) <= end]
    for col, status in (("lapse_date", "lapsed"), ("surrender_date", "surrendered"), ("maturity_date", "matured")):
        later = pd.to_datetime(pol[col]) > end
        pol.loc[later & (pol["status"] == status), "status"] = "in_force"
        if col != "maturity_date":  # the scheduled end of term is known from the start
            pol.loc[later, col] = None
    clm = clm[(pd.to_datetime(clm["claim_date"]) <= end) & clm["policy_id"].isin(pol["policy_id"])]
    con = con[pd.to_datetime(con["contact_ts"]) < end + pd.Timedelta(days=1)]
    keep = set(cus["customer_id"])
    return {"customers": cus, "policies": pol[pol["customer_id"].isin(keep)], "claims": clm[clm["customer_id"].isin(
        keep)], "contacts": con[con["customer_id"].isin(keep)]}


def _workspace(root: Path, tables: dict[str, pd.DataFrame], as_of: dt.date, cache: bool,
               fingerprints: bool = True) -> None:
    """The validated tables as validate writes them; with its fingerprints of them unless ``fingerprints`` is
    False, when those of the tables before stay in place (stale: the stage must notice and take its own)."""
    raw = repo_params_raw()
    raw["book"]["profile"] = "tiny"
    raw["book"]["as_of"] = as_of.isoformat()
    raw["features"]["n_train_snapshots"] = 6
    raw["features"]["train_sample_max_customers"] = 300  # a sample share that shrinks as the book grows
    raw["features"]["engine"]["cache"] = cache
    raw["features"]["engine"]["partition_rows"] = 10_000
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    interim = root / "data" / "interim"
    interim.mkdir(parents=True, exist_ok=True)
    for name, r in validate_book({k: v.copy() for k, v in tables.items()}, as_of).items():
        r.accepted.to_parquet(interim / f"{name}.parquet", index=False)
    if fingerprints:
        doc = interim_views.fingerprints(duckdb.connect(), interim_views.table_files(interim))
        (interim / "fingerprints.json").write_text(json.dumps(doc), encoding="utf-8")


def _run(root: Path, tables: dict[str, pd.DataFrame], as_of: dt.date, cache: bool,
         monkeypatch: pytest.MonkeyPatch, fingerprints: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """(the feature table, the dates of the snapshots read back: cache entries that were there before the run)."""
    _workspace(root, tables, as_of, cache, fingerprints)
    monkeypatch.chdir(root)
    folder = root / "data" / "cache" / "features"
    before = {p.name: p.stat().st_ino for p in folder.iterdir()} if folder.is_dir() else {}
    assert features.cli(["--params", "params.yaml"]) == 0
    reused = sorted(str(duckdb.sql(f"SELECT MIN(snapshot_date) FROM ({Entry(p).select()})").fetchall()[0][0])
                    for p in (folder.iterdir() if folder.is_dir() else ()) if before.get(p.name) == p.stat().st_ino)
    return pq.read_table(root / "data/features/features.parquet").to_pandas(), reused


def test_a_monthly_rerun_computes_only_what_changed_and_equals_a_full_recompute(
        clean_book: SyntheticBook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(EngineParams, "partitions", lambda self, n: 3)  # several parts a snapshot, as at 5M
    assert clean_book.truth["as_of"].iloc[0].date() == THIS
    now = {k: v.copy() for k, v in clean_book.tables().items()}
    inc = tmp_path / "incremental"
    _, reused = _run(inc, as_it_stood(now, LAST), LAST, True, monkeypatch)
    assert reused == []  # an empty cache

    # the new month: the snapshot whose labels matured (06-30) and the new scoring snapshot are computed;
    # the rest are read back at this month's smaller sample, 08-31 from last month's scoring snapshot
    got, reused = _run(inc, now, THIS, True, monkeypatch)
    assert reused == ["2026-03-31", "2026-04-30", "2026-05-31", "2026-07-31", "2026-08-31"]
    want, none = _run(tmp_path / "full", now, THIS, False, monkeypatch)
    assert none == [] and not (tmp_path / "full" / "data" / "cache").exists()
    pd.testing.assert_frame_equal(got, want)
    assert got["snapshot_date"].nunique() == 7
    report = "data/reports/features.json"  # rows and label rates of read-back snapshots come from the cache
    assert (inc / report).read_text(encoding="utf-8") == (tmp_path / "full" / report).read_text(encoding="utf-8")
    # in ROW_ORDER without a sort of the whole table: three customer partitions a snapshot, read back or not
    pd.testing.assert_frame_equal(got, got.sort_values(ROW_ORDER, ignore_index=True))

    # a correction to an old month: the snapshots after it are recomputed, the ones before read back
    row = now["contacts"].index[pd.to_datetime(now["contacts"]["contact_ts"]).dt.date == OLD_DAY][0]
    now["contacts"].loc[row, "outcome"] = "complaint" if now["contacts"].loc[row, "outcome"] != "complaint" else "quote"
    got, reused = _run(inc, now, THIS, True, monkeypatch)
    assert reused == ["2026-03-31", "2026-04-30"]
    want, _ = _run(tmp_path / "full", now, THIS, False, monkeypatch)
    pd.testing.assert_frame_equal(got, want)
    assert not got.equals(_run(tmp_path / "again", clean_book.tables(), THIS, False, monkeypatch)[0])

    # validate's fingerprints left from before a second correction: the stage sees they describe other tables,
    # takes its own, and recomputes exactly what the correction touched
    now["contacts"].loc[row, "outcome"] = "reached" if now["contacts"].loc[row, "outcome"] != "reached" else "quote"
    capsys.readouterr()
    got, reused = _run(inc, now, THIS, True, monkeypatch, fingerprints=False)
    assert "written for another contacts table than the one in place: fingerprinted" in capsys.readouterr().err
    assert reused == ["2026-03-31", "2026-04-30"]
    pd.testing.assert_frame_equal(got, _run(tmp_path / "full", now, THIS, False, monkeypatch)[0])

    # a run keeps only the entries it used
    assert len(list((inc / "data" / "cache" / "features").iterdir())) == 7


def test_running_out_of_memory_names_the_setting_and_leaves_no_output(
        clean_book: SyntheticBook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _workspace(tmp_path, clean_book.tables(), THIS, True)
    text = (tmp_path / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(text.replace("memory_limit: 3GB", "memory_limit: 2MB"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert features.cli(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "features.engine.memory_limit: 2MB" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "features").exists()


def test_a_cached_sample_serves_a_smaller_one_never_a_larger_one() -> None:
    assert _covers("t0500000", "t0400000") and _covers("t0500000", "t0500000")
    assert not _covers("t0400000", "t0500000")
    assert _covers("all", "all") and _covers("all", "t0100000") and not _covers("t0999999", "all")


@pytest.mark.parametrize("links", [True, False])
def test_the_scoring_snapshot_is_kept_as_a_link_to_the_table_or_a_copy_of_its_rows(
        clean_book: SyntheticBook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool) -> None:
    """Written once, straight into the table: the cache keeps a hard link to the table, read through the snapshot's
    date, or, where the file system has no hard links, a copy of its rows. A second run reads it back either way,
    after the first run's table was replaced."""
    if not links:
        def refuse(*_: object) -> None:
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(feature_cache.os, "link", refuse)
    first, _ = _run(tmp_path, clean_book.tables(), THIS, True, monkeypatch)
    entry = next(p for p in (tmp_path / "data/cache/features").iterdir() if p.name.endswith(".all"))
    table = tmp_path / "data/features/features.parquet"
    assert ((entry / "000.parquet").stat().st_ino == table.stat().st_ino) is links
    assert (entry / "snapshot_date").is_file() is links
    again, reused = _run(tmp_path, clean_book.tables(), THIS, True, monkeypatch)
    assert reused == sorted(set(first["snapshot_date"].astype(str)))  # every snapshot, the scoring one too
    assert (entry / "000.parquet").stat().st_ino != table.stat().st_ino  # a new table: the entry kept the old rows
    pd.testing.assert_frame_equal(again, first)
