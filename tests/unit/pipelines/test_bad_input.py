"""Bad input through the validate stage (issue 23): each case is quarantined with its rule or stops with exit 2
and one message naming the file, column and rule; never a traceback, and a stopped run changes no output byte.

The corpus is generated from a clean CSV book: each case edits one file's text the way broken exports do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake import contract
from pipelines import validate
from tests.conftest import repo_params_raw

Edit = Callable[[Path], None]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _set_cell(path: Path, column: str, row: int, value: str) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(path, index=False)


def _mixed_timezones(folder: Path) -> None:
    df = pd.read_csv(folder / "contacts.csv", dtype=str, keep_default_na=False)
    df["contact_ts"] = pd.to_datetime(df["contact_ts"]).dt.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    df.loc[[3, 8, 13], "contact_ts"] = "2026-01-05T10:00:00Z"
    df.to_csv(folder / "contacts.csv", index=False)


def _header_only(folder: Path) -> None:
    (folder / "contacts.csv").write_text(_lines(folder / "contacts.csv")[0], encoding="utf-8")


def _policy_before_birth(folder: Path) -> None:
    cust = pd.read_csv(folder / "customers.csv", dtype=str, keep_default_na=False)
    pol = pd.read_csv(folder / "policies.csv", dtype=str, keep_default_na=False)
    birth = cust.set_index("customer_id")["birth_date"]
    row = pol.index[pol["customer_id"].isin(birth.index)][0]
    pol.loc[row, "issue_date"] = str((pd.Timestamp(birth[pol.loc[row, "customer_id"]]) - pd.Timedelta(days=400)).date())
    pol.to_csv(folder / "policies.csv", index=False)


def _blank_lines(folder: Path) -> None:
    lines = _lines(folder / "contacts.csv")
    (folder / "contacts.csv").write_text("".join([lines[0], lines[1], "\n", lines[2], "\n", *lines[3:]]),
                                         encoding="utf-8")


def _duplicate_header(folder: Path) -> None:
    lines = _lines(folder / "customers.csv")
    (folder / "customers.csv").write_text(lines[0].replace("province", "gender", 1) + "".join(lines[1:]),
                                          encoding="utf-8")


# name -> (edit, exit code, file, column, rule); exit 0 = the rows are quarantined under that rule
CASES: dict[str, tuple[Edit, int, str, str, str]] = {
    "mixed_timezones": (_mixed_timezones, 0, "contacts", "contact_ts", "mixed_timezone"),
    "header_only_contacts": (_header_only, 2, "contacts.csv", "contacts", "min_rows"),
    "placeholder_key_NULL": (lambda f: _set_cell(f / "customers.csv", "customer_id", 4, "NULL"), 0, "customers",
                             "customer_id", "placeholder_key"),
    "placeholder_key_nan": (lambda f: _set_cell(f / "policies.csv", "policy_id", 2, "nan"), 0, "policies",
                            "policy_id", "placeholder_key"),
    "placeholder_key_dash": (lambda f: _set_cell(f / "contacts.csv", "contact_id", 6, "-"), 0, "contacts",
                             "contact_id", "placeholder_key"),
    "control_character_in_key": (lambda f: _set_cell(f / "contacts.csv", "contact_id", 5, "K\x0100042"), 0,
                                 "contacts", "contact_id", "control_character"),
    "control_character_in_text": (lambda f: _set_cell(f / "customers.csv", "city", 7, "上海\x1b"), 0, "customers",
                                  "city", "control_character"),
    "policy_before_birth": (_policy_before_birth, 0, "policies", "issue_date", "issued_before_birth"),
    "duplicate_header": (_duplicate_header, 2, "customers.csv", "gender", "duplicate_header"),
}


ROW = 5  # the row each generated case breaks


def _drop_column(path: Path, column: str) -> None:
    pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=[column]).to_csv(path, index=False)


def _copy_key(path: Path, key: str) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[ROW, key] = df.loc[ROW - 1, key]
    df.to_csv(path, index=False)


def _contract_cases() -> dict[str, tuple[Edit, int, str, str, str]]:
    """One case per way each contract column can break, generated from the contract itself: a blank required
    cell, text where a number or date belongs, an unknown code, a value out of range, a date after the extract,
    a key that breaks its pattern, a duplicated key, a reference to nothing, and a required column missing."""
    cases: dict[str, tuple[Edit, int, str, str, str]] = {}

    def cell(t: str, c: str, value: str) -> Edit:
        return lambda f: _set_cell(f / f"{t}.csv", c, ROW, value)

    for t in contract.TABLES.values():
        for c in (c for c in t.columns if not c.personal):
            if not c.nullable:
                cases[f"{t.name}.{c.name}.blank"] = (cell(t.name, c.name, ""), 0, t.name, c.name, "missing")
                cases[f"{t.name}.{c.name}.column_missing"] = (
                    lambda f, t=t, c=c: _drop_column(f / f"{t.name}.csv", c.name), 2, f"{t.name}.csv", c.name,
                    "missing_columns")
            if c.dtype in ("int", "float", "date", "timestamp", "bool"):
                cases[f"{t.name}.{c.name}.not_a_{c.dtype}"] = (cell(t.name, c.name, "n/a?"), 0, t.name, c.name,
                                                                "type")
            if c.allowed:
                cases[f"{t.name}.{c.name}.unknown_code"] = (cell(t.name, c.name, "zz_unknown"), 0, t.name, c.name,
                                                             "allowed_values")
            if c.min_value is not None:
                low = str(int(c.min_value) - 1) if c.dtype == "int" else str(c.min_value - 1)
                cases[f"{t.name}.{c.name}.below_min"] = (cell(t.name, c.name, low), 0, t.name, c.name, "range")
            if c.max_value is not None:
                high = str(int(c.max_value) + 1) if c.dtype == "int" else str(c.max_value * 10)
                cases[f"{t.name}.{c.name}.above_max"] = (cell(t.name, c.name, high), 0, t.name, c.name, "range")
            if c.not_after_as_of:
                late = "2099-01-01T10:00:00" if c.dtype == "timestamp" else "2099-01-01"
                cases[f"{t.name}.{c.name}.after_as_of"] = (cell(t.name, c.name, late), 0, t.name, c.name,
                                                            "future_date")
            if c.regex:
                cases[f"{t.name}.{c.name}.bad_pattern"] = (cell(t.name, c.name, "bad key!"), 0, t.name, c.name,
                                                            "pattern")
        cases[f"{t.name}.{t.key}.duplicate"] = (lambda f, t=t: _copy_key(f / f"{t.name}.csv", t.key), 0, t.name,
                                                 t.key, "duplicate_key")
        for fk in t.foreign_keys:
            cases[f"{t.name}.{fk.column}.orphan"] = (cell(t.name, fk.column, "NO_SUCH_KEY_999"), 0, t.name,
                                                      fk.column, "orphan_reference")
    return cases


CASES |= _contract_cases()


def _fingerprints(root: Path) -> dict[str, str]:
    data = root / "data"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*")) if p.is_file()} if data.is_dir() else {}


@pytest.fixture(scope="session")
def validated_template(clean_book, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean CSV book in ``src/`` with params.yaml pointing at it, validated once per test process."""
    root = tmp_path_factory.mktemp("csv_book")
    folder = root / "src"
    folder.mkdir()
    for name, df in clean_book.tables().items():
        df.to_csv(folder / f"{name}.csv", index=False)
    raw = repo_params_raw()
    raw["validate"]["source"] = {"dir": "src", "format": "csv", "encoding": "utf-8", "delimiter": ",", "tables": {}}
    raw["validate"]["max_reject_share"] = 0.05  # one broken row of the 32 claims is quarantined, not a stop
    (root / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert validate.cli(["--params", "params.yaml"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture()
def csv_book(validated_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the validated clean book (its outputs are what a failed run must not touch)."""
    root = tmp_path / "book"
    shutil.copytree(validated_template, root)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_quarantined_or_stopped_with_a_message(case: str, csv_book: Path, capsys) -> None:
    edit, code, where, column, rule = CASES[case]
    before = _fingerprints(csv_book)
    edit(csv_book / "src")
    capsys.readouterr()
    got = validate.cli(["--params", "params.yaml"])
    err = capsys.readouterr().err
    assert got == code, err[-3000:]
    assert "Traceback" not in err
    if code == 0:
        report = json.loads((csv_book / "data/reports/validation.json").read_text(encoding="utf-8"))
        rules = report["tables"][where]["rules"]
        assert any(rule in k and column in k for k in rules), rules
        assert report["reconciled"]
    else:
        failed = [line for line in err.splitlines() if "validate failed" in line]
        assert len(failed) == 1 and where in failed[0] and column in failed[0] and rule in failed[0], err[-2000:]
        assert _fingerprints(csv_book) == before, "a stopped run changed published outputs"


def test_blank_lines_are_counted_not_silently_dropped(csv_book: Path) -> None:
    _blank_lines(csv_book / "src")
    assert validate.cli(["--params", "params.yaml"]) == 0
    report = json.loads((csv_book / "data/reports/validation.json").read_text(encoding="utf-8"))
    assert report["tables"]["contacts"]["blank_lines"] == 2 and report["tables"]["customers"]["blank_lines"] == 0


def test_a_declared_date_format_is_strict(csv_book: Path, capsys) -> None:
    """A value that does not match the declared format is quarantined, never re-read as ISO; a format that
    matches nothing stops the stage naming the key."""
    raw = yaml.safe_load((csv_book / "params.yaml").read_text(encoding="utf-8"))
    raw["validate"]["source"]["tables"] = {"customers": {"dates": {"birth_date": "%d/%m/%Y"}}}
    (csv_book / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    capsys.readouterr()
    assert validate.cli(["--params", "params.yaml"]) == 2  # ISO dates in the file: the format matches nothing
    err = capsys.readouterr().err
    assert "dates.birth_date" in err and "date_format" in err and "Traceback" not in err
    cust = pd.read_csv(csv_book / "src/customers.csv", dtype=str, keep_default_na=False)
    iso = cust["birth_date"].copy()
    cust["birth_date"] = pd.to_datetime(iso).dt.strftime("%d/%m/%Y")
    cust.loc[3, "birth_date"] = iso[3]  # one row still ISO: must not slip through
    cust.to_csv(csv_book / "src/customers.csv", index=False)
    assert validate.cli(["--params", "params.yaml"]) == 0
    q = pd.read_parquet(csv_book / "data/interim/quarantine/customers.parquet")
    assert q["birth_date"].str.contains("(not %d/%m/%Y)", regex=False).any()


def test_disk_full_is_one_line_naming_the_path(csv_book: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _fingerprints(csv_book)
    real = os.replace

    def full(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003
        if "data" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    capsys.readouterr()
    assert validate.cli(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "validate failed" in line]
    assert len(failed) == 1 and "ENOSPC" in failed[0] and "data/" in failed[0] and "Traceback" not in err
    monkeypatch.setattr(os, "replace", real)
    assert _fingerprints(csv_book) == before
