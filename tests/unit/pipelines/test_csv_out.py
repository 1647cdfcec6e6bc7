"""The score file's CSV writer (pipelines/csv_out.py) writes the bytes pandas' ``to_csv`` writes."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import csv_out

TEXT = st.one_of(st.none(), st.text(alphabet=st.sampled_from(list('ab ,;|\t"\n\r\'中文·-:/0123456789')), max_size=8))
FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.1, -0.0, 1e-5, 1.23456789012e11,
                                                                                    2.5e20, 123.0, 0.030000000001]))
DATE = st.one_of(st.none(), st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))


def _pandas(df: pd.DataFrame, path: Path, delimiter: str, bom: bool = True) -> bytes:
    df.to_csv(path, index=False, sep=delimiter, encoding="utf-8-sig" if bom else "utf-8", lineterminator="\n",
              float_format="%.10g")
    return path.read_bytes()


def _ours(df: pd.DataFrame, path: Path, delimiter: str, bom: bool = True) -> bytes:
    digest = csv_out.write_csv(df, path, delimiter, "%.10g", bom)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()  # hashed as written, or read back from pandas'
    return path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(TEXT, FLOAT, st.integers(-2**62, 2**62), st.booleans(), DATE, TEXT), max_size=30),
       delimiter=st.sampled_from([",", ";", "\t", "|"]), bom=st.booleans())
def test_the_bytes_are_pandas(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[object, ...]],
                              delimiter: str, bom: bool) -> None:
    folder = tmp_path_factory.mktemp("csv")
    cols = ["id, with comma", 'p "quoted"', "n", "flag", "day", "reason"]
    df = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})
    df = df.assign(**{"id, with comma": df["id, with comma"].astype("str"),  # pandas 3's Arrow-backed text
                      "p \"quoted\"": df['p "quoted"'].astype("float64"), "n": df["n"].astype("int64"),
                      "flag": df["flag"].astype(bool), "reason": df["reason"].astype(object)})
    assert _ours(df, folder / "ours.csv", delimiter, bom) == _pandas(df, folder / "pandas.csv", delimiter, bom)


def test_a_chunked_long_frame_with_every_score_file_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_out, "CHUNK_ROWS", 7)  # several chunks, the last one short
    rng = np.random.default_rng(0)
    n = 50
    df = pd.DataFrame({
        "customer_id": pd.Series([f"C{i:07d}" for i in range(n)], dtype="str"),
        "as_of": [dt.date(2026, 9, 30)] * n,
        "p": rng.random(n), "value": np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1e4, n)),
        "tier": pd.Series(rng.choice(["P1", "P2", None], n), dtype="str"),
        "zh": pd.Series(rng.choice(["宠爱", "耕耘", "维系"], n), dtype="str"),
        "next": [dt.date(2026, 10, 7) if i % 3 else None for i in range(n)],
        "suppressed": pd.Series(np.where(rng.random(n) < 0.5, "true", "false"), dtype="str"),
        "touches": rng.integers(0, 4, n),
        "calibrated": rng.choice([0.1, 0.0, -0.0, np.nan, 3e-7, 0.030000000001], n),  # few values: factorized
        "reason": pd.Series(np.where(rng.random(n) < 0.5, "Premium: 1,234 / 保费: 1,234", None), dtype=object),
    })
    assert _ours(df, tmp_path / "a.csv", ",") == _pandas(df, tmp_path / "b.csv", ",")


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"only": ["", None, "x"]}),  # one column: the csv module quotes an empty row
    pd.DataFrame({"a": [1, 2], "when": pd.to_datetime(["2026-01-01 00:00", "2026-01-02 10:00"])}),
    pd.DataFrame({"a": [1, None], "n": pd.array([1, None], dtype="Int64")}),
    pd.DataFrame({"a": ["x", 3], "b": [1.0, 2.0]}),  # mixed objects
], ids=["one column", "datetime64", "nullable int", "mixed objects"])
def test_what_it_does_not_know_is_written_by_pandas(tmp_path: Path, frame: pd.DataFrame) -> None:
    assert _ours(frame, tmp_path / "a.csv", ",") == _pandas(frame, tmp_path / "b.csv", ",")
