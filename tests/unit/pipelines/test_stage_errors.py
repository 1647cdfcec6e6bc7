"""Bad inputs through the real stage CLIs: a clear message, exit code 2, and no output left behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.simulator.book import SyntheticBook
from pipelines import validate
from tests.conftest import repo_params_raw


def _write_csv_book(book: SyntheticBook, folder: Path, encoding: str = "utf-8", sep: str = ",") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in book.tables().items():
        df.to_csv(folder / f"{name}.csv", index=False, encoding=encoding, sep=sep)


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **source: str) -> Path:
    raw = repo_params_raw()
    raw["validate"]["source"].update({"dir": "in", "format": "csv", **source})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the stage as a user would and return its exit code and what it printed on stderr."""
    capsys.readouterr()
    code = validate.cli(["--params", "params.yaml"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _outputs(root: Path) -> list[Path]:
    data = root / "data"
    return sorted(p for p in data.rglob("*") if p.is_file()) if data.exists() else []


def test_csv_book_validates(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    code, err = _run(capsys)
    assert code == 0, err
    names = {p.relative_to(root / "data").as_posix() for p in _outputs(root)}
    assert {"interim/customers.parquet", "interim/quarantine/contacts.parquet",
            "reports/validation.json"} <= names
    acc = pd.read_parquet(root / "data/interim/customers.parquet")
    assert len(acc) == len(clean_book.customers) and "phone" not in acc


def test_missing_file(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    (root / "in/policies.csv").unlink()
    code, err = _run(capsys)
    assert code == 2
    assert "in/policies.csv" in err and "'policies' not found" in err and "customers.csv" in err
    assert _outputs(root) == []


def test_missing_optional_table_is_fine(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    (root / "in/claims.csv").unlink()
    code, _ = _run(capsys)
    assert code == 0
    assert not (root / "data/interim/claims.parquet").exists()


def test_missing_column(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    df = pd.read_csv(root / "in/contacts.csv", dtype=str)
    df.drop(columns=["outcome"]).to_csv(root / "in/contacts.csv", index=False)
    code, err = _run(capsys)
    assert code == 2
    assert "in/contacts.csv" in err and "'contacts'" in err and "['outcome']" in err
    assert _outputs(root) == []


def test_wrong_delimiter(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in", sep=";")
    code, err = _run(capsys)
    assert code == 2
    assert "in/customers.csv" in err and "semicolon" in err and "validate.source.delimiter: ';'" in err
    assert _outputs(root) == []


def test_gbk_file_when_utf8_expected(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    df = pd.read_csv(root / "in/customers.csv", dtype=str)
    df.to_csv(root / "in/customers.csv", index=False, encoding="gbk")  # names, provinces are Chinese
    code, err = _run(capsys)
    assert code == 2
    assert "in/customers.csv" in err and "not valid utf-8" in err and "GBK" in err and "encoding: gbk" in err
    assert _outputs(root) == []


def test_gbk_file_when_gbk_declared(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch, encoding="gbk")
    _write_csv_book(clean_book, root / "in", encoding="gbk")
    code, err = _run(capsys)
    assert code == 0, err
    acc = pd.read_parquet(root / "data/interim/customers.parquet")
    provinces = {"广东", "江苏", "浙江", "山东", "四川", "河南", "湖北", "北京", "上海", "福建"}
    assert set(acc["province"].dropna()) <= provinces


def test_utf8_with_bom_is_read(clean_book, tmp_path, monkeypatch, capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in", encoding="utf-8-sig")
    code, err = _run(capsys)
    assert code == 0, err


def test_reject_threshold_names_table_column_rule_count_and_ids(clean_book, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    df = pd.read_csv(root / "in/policies.csv", dtype=str)
    bad = df.index[:40]
    df.loc[bad, "annual_premium"] = "-100"
    df.to_csv(root / "in/policies.csv", index=False)
    code, err = _run(capsys)
    assert code == 2
    assert "table 'policies' (" in err and "policies.csv" in err  # the table and its file
    assert "column 'annual_premium'" in err and "rule 'range'" in err
    assert "40 rows" in err and str(df.loc[bad[0], "policy_id"]) in err
    assert _outputs(root) == []


def test_bad_params_stop_the_stage(tmp_path, monkeypatch, capsys) -> None:
    raw = repo_params_raw()
    raw["validate"]["max_reject_share"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys)
    assert code == 2 and "validate.max_reject_share" in err
    assert _outputs(tmp_path) == []


def test_features_refuse_counts_beyond_the_packed_fields(clean_book, tmp_path, monkeypatch, capsys) -> None:
    """The features stage names the contact file and leaves no output when a window count cannot be packed."""
    from features.snapshots import counters
    from pipelines import features

    root = _setup(tmp_path, monkeypatch)
    _write_csv_book(clean_book, root / "in")
    assert _run(capsys)[0] == 0
    monkeypatch.setattr(counters, "PACK_BITS", 3)
    monkeypatch.setattr(counters, "PACK_LIMIT", 2 ** 3)
    capsys.readouterr()
    code = features.cli(["--params", "params.yaml"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "data/interim/contacts.parquet" in err and "or more contact rows between" in err
    assert not (root / "data/features").exists() or not any((root / "data/features").iterdir())
