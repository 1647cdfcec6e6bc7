"""Bring your own data: the worked example in docs/your_data.md runs as written, and mapping errors are clear."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake.contract import TABLES
from features.intake.mapping import MappingError, TableMapping, apply_mapping
from pipelines import validate
from tests.conftest import REPO, repo_params_raw


def doc_source() -> dict:
    text = (REPO / "docs/your_data.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("validate:"))
    return yaml.safe_load(block)["validate"]["source"]


def _to_source(df: pd.DataFrame, table: str, m: dict) -> pd.DataFrame:
    """The export a CRM would produce: the mapping applied backwards."""
    spec = TABLES[table]
    out = df.drop(columns=[c for c in m.get("defaults", {}) if c in df.columns]).copy()
    for col, fmt in m.get("dates", {}).items():
        out[col] = pd.to_datetime(out[col]).dt.strftime(fmt).where(out[col].notna(), "")
    for col, codes in m.get("values", {}).items():
        inverse = {str(v).lower(): k for k, v in codes.items()}
        out[col] = out[col].map(lambda v, inv=inverse: inv.get(str(v).lower(), v) if pd.notna(v) else v)
    assert set(m.get("columns", {})) <= set(spec.column_names)
    return out.rename(columns=m.get("columns", {}))


def test_the_documented_example_validates_every_row(clean_book, tmp_path: Path, monkeypatch, capsys) -> None:
    source = doc_source()
    folder = tmp_path / source["dir"]
    folder.mkdir(parents=True)
    tables = clean_book.tables()
    for table, m in source["tables"].items():
        src = _to_source(tables[table], table, m)
        src.to_csv(folder / m["file"], index=False, sep=m.get("delimiter", source["delimiter"]),
                   encoding=m.get("encoding", source["encoding"]))
    assert (folder / "客户.csv").read_bytes().decode("gbk")  # really GBK
    raw = repo_params_raw()
    raw["validate"]["source"] = source
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = validate.cli(["--params", "params.yaml"])
    err = capsys.readouterr().err
    assert code == 0, err
    report = yaml.safe_load((tmp_path / "data/reports/validation.json").read_text(encoding="utf-8"))
    for table in ("customers", "policies", "contacts"):
        t = report["tables"][table]
        assert t["quarantined"] == 0 and t["accepted"] == len(tables[table]), (table, t["rules"])
    assert "claims" not in report["tables"]  # optional and not exported
    customers = pd.read_parquet(tmp_path / "data/interim/customers.parquet").set_index("customer_id")
    original = tables["customers"].set_index("customer_id")
    assert set(customers["gender"]) <= {"F", "M"} and not customers["do_not_sms"].any()
    assert (customers["income_band"].fillna("") == original["income_band"].reindex(customers.index).fillna("")).all()
    assert (customers["do_not_call"] == original["do_not_call"].reindex(customers.index)).all()
    assert (pd.to_datetime(customers["birth_date"]) == pd.to_datetime(original["birth_date"]).reindex(
        customers.index)).all()
    contacts = pd.read_parquet(tmp_path / "data/interim/contacts.parquet").set_index("contact_id")
    want = tables["contacts"].set_index("contact_id")["contact_ts"].reindex(contacts.index)
    assert (pd.to_datetime(contacts["contact_ts"]) == pd.to_datetime(want).dt.floor("s")).all()
    policies = pd.read_parquet(tmp_path / "data/interim/policies.parquet")
    assert set(policies["status"]) <= {"in_force", "lapsed", "surrendered", "matured"}


def test_mapping_errors_name_the_file_key_and_columns() -> None:
    spec = TABLES["customers"]
    df = pd.DataFrame({"CUST_NO": ["C1"], "SEX": ["男"]})
    with pytest.raises(MappingError, match=r"customers.csv.*customer_id <- 'CUSTNO'.*The file has: CUST_NO, SEX"):
        apply_mapping(df, TableMapping(columns={"customer_id": "CUSTNO"}), spec, "customers.csv")
    with pytest.raises(MappingError, match=r"not in the 'customers' contract: \['shoe_size'\]"):
        apply_mapping(df, TableMapping(defaults={"shoe_size": 42}), spec, "customers.csv")


def test_unmapped_codes_and_bad_dates_are_left_for_the_contract_to_quarantine() -> None:
    spec = TABLES["customers"]
    df = pd.DataFrame({"customer_id": ["C1", "C2"], "gender": ["男", "?"], "birth_date": ["1980/02/30", "1980/02/03"]})
    out = apply_mapping(df, TableMapping(values={"gender": {"男": "M"}}, dates={"birth_date": "%Y/%m/%d"}), spec, "x")
    assert out["gender"].tolist() == ["M", "?"]  # '?' stays, so validation reports it
    assert out["birth_date"].tolist() == ["1980/02/30 (not %Y/%m/%d)", "1980-02-03"]  # Feb 30 kept, marked


@pytest.mark.slow
@pytest.mark.xdist_group("your_data")
def test_the_whole_pipeline_runs_on_the_documented_export(small_params, tmp_path: Path) -> None:
    """`dvc repro` on the worked example's files: generate, truth and truth_check skip themselves, the rest delivers."""
    import json

    from features.simulator.book import simulate_book
    from tests.e2e.workspace import BIN, repo_copy, run_cmd

    root = repo_copy(tmp_path)
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    raw["book"]["profile"] = "tiny"
    sp = small_params.synthetic().model_copy(update={"dirty_share": 0.0, "truth_replicates": 1})
    sp = sp.model_copy(update={"size": sp.size.model_copy(update={"n_customers": 2000}), "as_of": raw["book"]["as_of"]})
    tables = simulate_book(sp).tables()
    source = doc_source()
    folder = root / source["dir"]
    folder.mkdir(parents=True)
    for table, m in source["tables"].items():
        _to_source(tables[table], table, m).to_csv(folder / m["file"], index=False,
                                                   sep=m.get("delimiter", source["delimiter"]),
                                                   encoding=m.get("encoding", source["encoding"]))
    raw["validate"]["source"] = source
    (root / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    proc = run_cmd([str(BIN / "dvc"), "repro"], root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "generate skipped" in proc.stdout + proc.stderr and "truth_check skipped" in proc.stdout + proc.stderr
    assert "truth skipped" in proc.stdout + proc.stderr
    for stage in ("generate", "truth"):
        assert "skipped" in json.loads((root / f"data/reports/{stage}.json").read_text(encoding="utf-8"))
    assert not list((root / "data/synthetic/book").glob("*.parquet"))
    manifest = json.loads((root / f"data/scores/manifest_{raw['book']['as_of']}.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == len(tables["customers"])
    assert "Check against true probabilities skipped" in (root / "data/reports/report.html").read_text(encoding="utf-8")
