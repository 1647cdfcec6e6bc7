"""Validate's fingerprints of the tables serve the features stage only for the very files they were taken of."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features.intake.validation import validate_book
from features.simulator.book import SyntheticBook
from features.snapshots.fingerprint import Prefix
from pipelines import interim


@pytest.fixture
def folder(clean_book: SyntheticBook, tmp_path: Path) -> Path:
    as_of = clean_book.truth["as_of"].iloc[0].date()
    for name, r in validate_book(clean_book.tables(), as_of).items():
        r.accepted.to_parquet(tmp_path / f"{name}.parquet", index=False)
    return tmp_path


def _doc(folder: Path) -> dict:
    """As validate writes it, read back as features reads it."""
    return json.loads(json.dumps(interim.fingerprints(duckdb.connect(), interim.table_files(folder))))


def test_the_written_fingerprints_are_the_day_sums_of_the_tables(folder: Path) -> None:
    doc = _doc(folder)
    got, why = interim.prefixes(doc, interim.table_files(folder))
    assert got is not None, why
    con = duckdb.connect()
    interim.register_tables(con, folder)
    want = {t: Prefix.of(rows) for t, rows in interim.day_sums(con).items()}
    assert got == want
    assert got["contacts"].counts[-1] == len(pd.read_parquet(folder / "contacts.parquet"))


def test_fingerprints_of_other_files_are_refused_naming_the_table(folder: Path) -> None:
    doc = _doc(folder)
    contacts = pd.read_parquet(folder / "contacts.parquet")
    flip = contacts["outcome"].iloc[0] != "complaint"
    contacts.loc[0, "outcome"] = "complaint" if flip else "quote"  # one value: the same rows, the same row count
    contacts.to_parquet(folder / "contacts.parquet", index=False)
    got, why = interim.prefixes(doc, interim.table_files(folder))
    assert got is None and "another contacts table" in why


def test_an_optional_table_that_appeared_or_went_is_noticed(folder: Path) -> None:
    doc = _doc(folder)
    (folder / "claims.parquet").unlink()
    assert interim.prefixes(doc, interim.table_files(folder)) == (
        None, "the fingerprints were written for another claims table than the one in place")
    without = _doc(folder)
    assert without["tables"]["claims"] == {"file": None, "days": []}
    assert interim.prefixes(without, interim.table_files(folder))[0] is not None


def test_missing_or_older_fingerprints_are_refused(folder: Path) -> None:
    files = interim.table_files(folder)
    assert interim.prefixes(None, files) == (None, "no fingerprints from the validate stage")
    doc = _doc(folder) | {"format": 0}
    got, why = interim.prefixes(doc, files)
    assert got is None and "another format" in why


def test_file_identity_changes_with_any_rewrite_of_the_rows(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})
    df.to_parquet(tmp_path / "t.parquet", index=False)
    before = interim.file_identity(tmp_path / "t.parquet")
    df.to_parquet(tmp_path / "t.parquet", index=False)
    assert interim.file_identity(tmp_path / "t.parquet") == before  # the same rows written again
    df.loc[500, "b"] = "y"
    df.to_parquet(tmp_path / "t.parquet", index=False)
    assert interim.file_identity(tmp_path / "t.parquet") != before


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"format": 1, "tables": []}'])
def test_an_unreadable_fingerprints_file_is_refused_not_a_traceback(folder: Path, text: str) -> None:
    (folder / "fingerprints.json").write_text(text, encoding="utf-8")
    got, why = interim.prefixes(interim.read_fingerprints(folder / "fingerprints.json"), interim.table_files(folder))
    assert got is None and why


def test_the_written_fingerprints_are_in_day_order_so_the_file_is_the_same_every_run(folder: Path) -> None:
    """A parallel GROUP BY returns days in any order: unsorted, validate's output (a DVC output) changes each run."""
    for entry in _doc(folder)["tables"].values():
        days = [d for d, _, _ in entry["days"]]
        assert days == sorted(days, key=lambda d: (d is None, d or ""))
    assert _doc(folder) == _doc(folder)


def test_fingerprints_with_unreadable_days_are_refused_naming_the_table(folder: Path) -> None:
    doc = _doc(folder)
    doc["tables"]["contacts"]["days"][0][0] = "not a date"
    got, why = interim.prefixes(doc, interim.table_files(folder))
    assert got is None and "contacts" in why
    assert interim.take_fingerprints(interim.table_files(folder)) == _doc(folder)  # validate's own connection
