"""Personal data is found by column name (English and Chinese) and by content, whatever the column is called."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake import personal
from tests.builders import mobile, resident_id


@pytest.mark.parametrize("column, kind", [
    ("name", "name"), ("customer_name", "name"), ("FullName", "name"), ("姓名", "name"), ("客户名称", "name"),
    ("mobile", "phone"), ("phone_no", "phone"), ("Tel", "phone"), ("手机号码", "phone"), ("联系电话", "phone"),
    ("id_number", "id_number"), ("ID_No", "id_number"), ("idcard", "id_number"), ("身份证号", "id_number"),
    ("证件号码", "id_number"), ("email", "email"), ("E-mail", "email"), ("邮箱", "email"),
    ("home_address", "address"), ("地址", "address"),
])
def test_personal_column_names_in_english_and_chinese(column: str, kind: str) -> None:
    assert personal.by_name(column) == kind


@pytest.mark.parametrize("column", ["age", "tenure", "Contract", "MonthlyCharges", "income_band", "province",
                                    "policy_id", "customer_id", "idle_days", "identical"])
def test_ordinary_column_names_are_not_personal(column: str) -> None:
    assert personal.by_name(column) is None


def test_a_personal_name_on_a_few_categories_is_not_personal_data() -> None:
    """Telco's PhoneService is Yes/No: a name about phones, but no phone number in it."""
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"PhoneService": rng.choice(["Yes", "No"], 500), "MultipleLines": rng.choice(["Yes", "No"], 500)})
    assert personal.find(df) == []


def test_a_channel_count_named_after_phone_is_flagged_by_name_but_can_be_declared_not_personal() -> None:
    df = pd.DataFrame({"n_phone_30d": [1, 2, 3]})
    assert [f.column for f in personal.find(df)] == ["n_phone_30d"]
    assert personal.find(df, not_personal=["n_phone_30d"]) == []


def test_resident_id_check_digit() -> None:
    rng = np.random.default_rng(0)
    good = resident_id(rng)
    assert personal.valid_resident_id(good)
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    assert not personal.valid_resident_id(wrong)
    assert not personal.valid_resident_id("12345678901234567")  # 17 characters


def test_content_finds_phones_ids_and_emails_behind_innocent_names() -> None:
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({
        "contact": [mobile(rng) for _ in range(n)],
        "ref": [resident_id(rng) for _ in range(n)],
        "c3": [f"user{i}@example.com" for i in range(n)],
        "as_number": [int(mobile(rng)) for _ in range(n)],          # phone numbers read as integers
        "score": rng.random(n),
        "segment": rng.choice(["gold", "silver"], n),
        "amount": rng.integers(0, 10**6, n),
    })
    found = {f.column: f.kind for f in personal.find(df)}
    assert found == {"contact": "phone", "ref": "id_number", "c3": "email", "as_number": "phone"}
    assert all("content" in f.rule and "@" not in f.describe() for f in personal.find(df))


def test_declared_personal_columns_and_not_personal_never_hides_content() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"remark": ["x"] * 10, "key2": [mobile(rng) for _ in range(10)]})
    found = personal.find(df, declared=["remark"], not_personal=["key2"])
    assert [(f.column, f.kind) for f in found] == [("remark", "declared"), ("key2", "phone")]


def test_a_minority_of_phone_like_values_is_not_enough() -> None:
    rng = np.random.default_rng(3)
    values = [mobile(rng) for _ in range(20)] + [f"order {i}" for i in range(80)]
    assert personal.by_content(pd.Series(values)) is None


def test_a_long_column_is_judged_on_a_sample_of_its_non_blank_values() -> None:
    """A long column (a validate chunk) is sampled by position after blanks are dropped: phone numbers in a
    column that is nearly all blanks are still found, a large mixed column is judged by its share, and the
    same column always gives the same answer."""
    rng = np.random.default_rng(6)
    n = 50 * personal.SAMPLE
    sparse = pd.Series([""] * n, dtype="str")
    sparse.iloc[rng.choice(n, 300, replace=False)] = [mobile(rng) for _ in range(300)]
    assert personal.by_content(sparse) == ("phone", 1.0)
    mixed = pd.Series([mobile(rng) if r < 0.3 else f"order {i}" for i, r in enumerate(rng.random(n))], dtype="str")
    assert personal.by_content(mixed) is None
    share = float(personal._sample(mixed).str.match(personal.MOBILE.pattern).mean())
    assert len(personal._sample(mixed)) == personal.SAMPLE and 0.25 < share < 0.35
    mostly = pd.Series([mobile(rng) if r < 0.7 else f"order {i}" for i, r in enumerate(rng.random(n))], dtype="str")
    found = personal.by_content(mostly)
    assert found is not None and found[0] == "phone" and 0.65 < found[1] < 0.75
    assert found == personal.by_content(mostly)
    halves = pd.Series([f"order {i}" for i in range(n // 2)] + [mobile(rng) for _ in range(n // 2)], dtype="str")
    share = float(personal._sample(halves).str.match(personal.MOBILE.pattern).mean())
    assert 0.45 < share < 0.55  # drawn from the whole column, not its first rows
