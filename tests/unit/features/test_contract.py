from __future__ import annotations

from features.intake.contract import TABLE_ORDER, TABLES, personal_columns, render_markdown
from tests.conftest import REPO


def test_docs_page_matches_the_contract_in_code() -> None:
    doc = (REPO / "docs" / "data_contract.md").read_text(encoding="utf-8")
    assert doc == render_markdown(), "docs/data_contract.md is stale: run `make docs`"


def test_every_table_has_its_key_and_fk_columns() -> None:
    for name in TABLE_ORDER:
        t = TABLES[name]
        assert t.key in t.column_names
        for fk in t.foreign_keys:
            assert fk.column in t.column_names
            assert fk.ref_column in TABLES[fk.table].column_names
            # a foreign key points only at tables validated before (or at itself)
            assert TABLE_ORDER.index(fk.table) <= TABLE_ORDER.index(name)


def test_personal_fields_are_declared() -> None:
    assert set(personal_columns()["customers"]) == {"name", "phone", "id_number"}
    assert set(personal_columns()) == {"customers"}
