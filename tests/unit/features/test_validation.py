"""The validate logic: each contract rule catches its case, and the counts always reconcile."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import TABLES
from features.intake.validation import ContractError, validate_book
from features.simulator.book import SyntheticBook

AS_OF = dt.date(2026, 9, 30)


def _tables(book: SyntheticBook) -> dict[str, pd.DataFrame]:
    return {k: v.copy() for k, v in book.tables().items()}


def _reconciles(results) -> None:
    for r in results.values():
        assert r.n_input == len(r.accepted) + len(r.quarantine)
        assert sum(r.rejects.values()) == len(r.quarantine)


def test_generated_book_without_dirt_passes_the_contract(clean_book: SyntheticBook) -> None:
    res = validate_book(_tables(clean_book), clean_book.truth["as_of"].iloc[0].date())
    _reconciles(res)
    assert {k: r.n_rejected for k, r in res.items()} == dict.fromkeys(res, 0)


def test_injected_dirt_is_caught_rule_by_rule(small_book: SyntheticBook) -> None:
    res = validate_book(_tables(small_book), small_book.truth["as_of"].iloc[0].date())
    _reconciles(res)
    for table, rules in small_book.summary["dirty_rows_injected"].items():
        got = {rule for (rule, _col) in res[table].rejects}
        # every kind of corruption is caught, each injected row (a row of its own) is rejected, and
        # cascades (orphans of rejected parents) can only add rejects
        assert set(rules) <= got, (table, rules, got)
        assert res[table].n_rejected >= sum(rules.values()), table


CASES = [
    # table, column, bad value, expected rule
    ("customers", "gender", "X", "allowed_values"),
    ("customers", "birth_date", "2031-01-01", "future_date"),
    ("customers", "birth_date", "not a date", "type"),
    ("customers", "children", "2.5", "type"),
    ("customers", "occupation_class", "9", "range"),
    ("customers", "do_not_call", "maybe", "type"),
    ("customers", "needs_class", None, "missing"),
    ("customers", "customer_id", "C 1", "pattern"),
    ("policies", "annual_premium", "-5", "range"),
    ("policies", "status", "Lapsed ", "allowed_values"),
    ("policies", "customer_id", "C_NOPE", "orphan_reference"),
    ("policies", "issue_date", "2027-01-01", "future_date"),
    ("claims", "amount", "-1", "range"),
    ("claims", "policy_id", "P_NOPE", "orphan_reference"),
    ("contacts", "channel", "fax", "allowed_values"),
    ("contacts", "contact_ts", "2026-10-02 10:00:00", "future_date"),
    ("contacts", "outcome", "bought", "allowed_values"),
    ("contacts", "duration_sec", "-3", "range"),
]


@pytest.mark.parametrize(("table", "column", "value", "rule"), CASES)
def test_each_rule_quarantines_the_broken_row(clean_book: SyntheticBook, table: str, column: str, value,
                                              rule: str) -> None:
    t = _tables(clean_book)
    df = t[table].astype({column: object})
    row = 3 if table != "contacts" else int(np.flatnonzero(~df["holdout"].to_numpy())[3])
    df.loc[row, column] = value
    t[table] = df
    res = validate_book(t, AS_OF)
    _reconciles(res)
    q = res[table].quarantine
    key = TABLES[table].key
    hit = q[q[key] == str(t[table].loc[row, key])]
    assert len(hit) == 1, q
    assert hit["reject_rule"].iloc[0] == rule
    assert hit["reject_column"].iloc[0] == column
    assert res[table].rejects[(rule, column)] == 1


def test_row_rules(clean_book: SyntheticBook) -> None:
    t = _tables(clean_book)
    po = t["policies"]
    inforce = po.index[po["status"] == "in_force"]
    po.loc[inforce[0], "lapse_date"] = po.loc[inforce[0], "issue_date"]  # in force but lapsed
    po.loc[inforce[1], "maturity_date"] = po.loc[inforce[1], "issue_date"] - pd.Timedelta(days=3)
    co = t["contacts"]
    live = co.index[~co["holdout"]]
    co.loc[live[0], "holdout"] = True  # a holdout row with an outcome
    res = validate_book(t, AS_OF)
    rules = {r for (r, _c) in res["policies"].rejects}
    assert rules == {"status_dates_consistent"} or rules == {"status_dates_consistent", "dates_after_issue"}
    assert res["policies"].n_rejected == 2
    assert res["contacts"].rejects == {("holdout_has_no_outcome", "outcome"): 1}


def test_duplicates_keep_the_first_and_quarantine_the_rest(clean_book: SyntheticBook) -> None:
    t = _tables(clean_book)
    cu = t["customers"]
    t["customers"] = pd.concat([cu, cu.iloc[[5]].assign(city="x")], ignore_index=True)
    co = t["contacts"]
    copy = co[~co["holdout"]].iloc[[10]].assign(contact_id="K_COPY")
    t["contacts"] = pd.concat([co, copy], ignore_index=True)
    res = validate_book(t, AS_OF)
    assert res["customers"].rejects == {("duplicate_key", "customer_id"): 1}
    assert res["customers"].quarantine["city"].iloc[0] == "x"  # the later copy is the one rejected
    ((rule, _), n), = res["contacts"].rejects.items()
    assert (rule, n) == ("duplicate_event", 1)
    assert res["contacts"].quarantine["contact_id"].iloc[0] == "K_COPY"


def test_rejected_customer_cascades_to_children(clean_book: SyntheticBook) -> None:
    t = _tables(clean_book)
    cid = t["policies"]["customer_id"].iloc[0]
    cu = t["customers"].astype({"gender": object})
    cu.loc[cu["customer_id"] == cid, "gender"] = "?"
    t["customers"] = cu
    res = validate_book(t, AS_OF)
    _reconciles(res)
    # the customer, and anyone they referred, is rejected; so is everything pointing at them
    gone = set(res["customers"].quarantine["customer_id"])
    assert cid in gone
    assert gone - {cid} <= set(cu.loc[cu["referred_by"] == cid, "customer_id"]) | _referees(cu, {cid})
    for table in ("policies", "contacts"):
        n_expected = int(t[table]["customer_id"].isin(gone).sum())
        assert n_expected > 0 or table == "contacts"
        assert res[table].rejects.get(("orphan_reference", "customer_id"), 0) == n_expected
        assert not res[table].accepted["customer_id"].isin(gone).any()


def _referees(cu: pd.DataFrame, roots: set[str]) -> set[str]:
    """Everyone reachable from ``roots`` through referred_by links."""
    out, frontier = set(), set(roots)
    while frontier:
        nxt = set(cu.loc[cu["referred_by"].isin(frontier), "customer_id"]) - out
        out |= nxt
        frontier = nxt
    return out


def test_personal_columns_never_leave_validation(small_book: SyntheticBook) -> None:
    res = validate_book(_tables(small_book), AS_OF)
    personal = small_book.customers[["name", "phone", "id_number"]]
    values = set(personal.stack().dropna().astype(str))
    for r in res.values():
        for frame in (r.accepted, r.quarantine):
            assert not {"name", "phone", "id_number"} & set(frame.columns)
            text = set(frame.astype(str).stack())
            assert not values & text


def test_a_key_holding_phone_or_id_numbers_stops_the_book(clean_book: SyntheticBook) -> None:
    """Issue 23: an insurer keyed by mobile number would publish it in features and score files."""
    t = _tables(clean_book)
    phones = t["customers"]["phone"].astype(str).str.replace(r"\D", "", regex=True)
    t["customers"]["agent_id"] = phones.to_numpy()  # an "agent" column that holds customers' phone numbers
    with pytest.raises(ContractError, match=r"customers.*agent_id: \d+% of sampled values look like phone.*"
                                            r"personal_data") as err:
        validate_book(t, AS_OF)
    assert not any(str(p) in str(err.value) for p in phones if len(str(p)) == 11)  # rule and share, no value


def test_text_input_is_parsed_like_parquet_input(clean_book: SyntheticBook) -> None:
    """A CSV export (all text) validates to the same accepted rows as typed Parquet input."""
    typed = validate_book(_tables(clean_book), AS_OF)
    as_text = {k: v.astype(str).replace({"None": "", "nan": "", "NaT": "", "<NA>": ""})
               for k, v in _tables(clean_book).items()}
    texted = validate_book(as_text, AS_OF)
    for k in typed:
        pd.testing.assert_frame_equal(typed[k].accepted, texted[k].accepted, check_dtype=True)


def test_missing_column_is_a_table_level_error(clean_book: SyntheticBook) -> None:
    t = _tables(clean_book)
    t["contacts"] = t["contacts"].drop(columns=["channel"])
    with pytest.raises(ContractError, match=r"lacks required column\(s\) \['channel'\]"):
        validate_book(t, AS_OF)


def test_claims_are_optional_but_customers_are_not(clean_book: SyntheticBook) -> None:
    t = _tables(clean_book)
    del t["claims"]
    assert "claims" not in validate_book(t, AS_OF)
    del t["customers"]
    with pytest.raises(ContractError, match="customers"):
        validate_book(t, AS_OF)


def test_validated_contacts_come_out_by_month_then_customer(clean_book: SyntheticBook) -> None:
    """The features stage's speed relies on this layout; a user's export may come in any order."""
    raw = _tables(clean_book)
    raw["contacts"] = raw["contacts"].sample(frac=1.0, random_state=3).reset_index(drop=True)
    out = validate_book(raw, clean_book.truth["as_of"].iloc[0].date())["contacts"].accepted
    assert sorted(out["contact_id"]) == sorted(raw["contacts"]["contact_id"])
    month = out["contact_ts"].dt.to_period("M")
    assert month.is_monotonic_increasing
    key = list(zip(month, out["customer_id"], out["contact_ts"], out["contact_id"], strict=True))
    assert key == sorted(key)


def test_customer_keys_are_dense_ranks_shared_by_every_table(clean_book: SyntheticBook) -> None:
    res = validate_book({k: v.copy() for k, v in clean_book.tables().items()}, AS_OF)
    cust = res["customers"].accepted
    order = cust.sort_values("customer_id")
    assert order["customer_key"].tolist() == list(range(len(cust)))  # dense, in customer_id order
    key_of = dict(zip(cust["customer_id"], cust["customer_key"], strict=True))
    for name in ("policies", "claims", "contacts"):
        df = res[name].accepted
        assert df["customer_key"].dtype == "int32"
        assert (df["customer_key"] == df["customer_id"].map(key_of)).all(), name
    referred = cust["referred_by"].notna() & cust["referred_by"].isin(key_of)
    assert referred.any()
    assert (cust.loc[referred, "referred_by_key"] == cust.loc[referred, "referred_by"].map(key_of)).all()
    assert cust.loc[cust["referred_by"].isna(), "referred_by_key"].isna().all()
