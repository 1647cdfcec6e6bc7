"""A table validated in row chunks gives exactly what validating it at once gives (pipelines/validate_chunks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import interim
from pipelines import validate as stage
from pipelines.errors import RejectThresholdError
from pipelines.params import Params
from pipelines.validate_chunks import ChunkedResult

CHUNK = 1_000  # the smallest chunk params allow: the small book's 25k contacts make about 25 chunks


def _dirty(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The small book plus the cases where the order of the rules across chunks decides the outcome."""
    c = tables["contacts"].copy()
    first, holdout = c.index[10], c.index[c["holdout"]][0]
    # an orphan that is its key's first occurrence (it is rejected as an orphan), the key repeated chunks later by
    # a valid row (a duplicate all the same: duplicates are found before references)
    again = c.loc[[c.index[20]]].assign(contact_id=c.loc[first, "contact_id"])
    c.loc[first, "customer_id"] = "C9999999"
    both = c.loc[[first]]  # the orphan repeated: a duplicate first (the rule that comes first names it)
    copied = c.loc[[c.index[30]]].assign(contact_id="K-COPY-1")  # the same event twice, far apart
    after_holdout = c.loc[[holdout]].assign(contact_id="K-COPY-2")  # a holdout row repeated: never a duplicate
    tables["contacts"] = pd.concat([c, again, both, copied, after_holdout], ignore_index=True)
    p = tables["policies"].copy()
    p.loc[p.index[5], "issue_date"] = pd.Timestamp("1901-01-01")  # issued before the holder's birth
    tables["policies"] = p
    return tables


def _params(p: Params, folder: Path, fmt: str, chunk_rows: int) -> Params:
    src = p.validate_.source.model_copy(update={"dir": str(folder), "format": fmt})
    return p.model_copy(update={"validate_": p.validate_.model_copy(update={"source": src, "chunk_rows": chunk_rows})})


def _frames(results: dict) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    out = {}
    for name, r in results.items():
        if isinstance(r, ChunkedResult):
            out[name] = (pd.read_parquet(r.accepted_file), pd.read_parquet(r.quarantine_file))
        else:
            out[name] = (r.accepted, r.quarantine)
    return out


@pytest.fixture(scope="module")
def raw_book(small_book, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("raw_book")
    for name, df in _dirty({k: v.copy() for k, v in small_book.tables().items()}).items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
        text = df.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")
        if name == "contacts":  # blank lines (counted, not rows) and one timestamp in another zone
            lines = text.splitlines()
            lines.insert(CHUNK + 5, "")
            ts = lines[-100].split(",")[2]
            lines[-100] = lines[-100].replace(ts, ts + "+08:00")
            text = "\n".join(lines) + "\n"
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunked_equals_whole(fmt: str, raw_book: Path, small_params: Params, tmp_path: Path) -> None:
    whole = stage.validate_tables(_params(small_params, raw_book, fmt, 10**9), tmp_path / "a")
    chunked = stage.validate_tables(_params(small_params, raw_book, fmt, CHUNK), tmp_path / "b")
    assert all(isinstance(r, ChunkedResult) for n, r in chunked[0].items() if n in ("policies", "contacts"))
    assert not any(isinstance(r, ChunkedResult) for r in whole[0].values())
    assert chunked[1:] == whole[1:]  # sources and blank lines
    assert stage.reconciliation(chunked[0], 0.02) == stage.reconciliation(whole[0], 0.02)
    a, b = _frames(whole[0]), _frames(chunked[0])
    for name in a:
        pd.testing.assert_frame_equal(b[name][0], a[name][0], check_exact=True)
        pd.testing.assert_frame_equal(b[name][1], a[name][1], check_exact=True)
        for rule, col in whole[0][name].rejects:
            assert chunked[0][name].sample_keys(rule, col) == whole[0][name].sample_keys(rule, col)
    # the cases above happened, so the equality covers them
    q = a["contacts"][1].set_index("contact_id")
    assert q.loc[q["customer_id"] == "C9999999", "reject_rule"].tolist() == ["orphan_reference", "duplicate_key"]
    assert (q["reject_rule"] == "duplicate_key").sum() >= 2
    assert "K-COPY-1" in q.index and q.loc["K-COPY-1", "reject_rule"] == "duplicate_event"
    assert "K-COPY-2" not in q.index and "K-COPY-2" in set(a["contacts"][0]["contact_id"])
    assert "issued_before_birth" in set(a["policies"][1]["reject_rule"])
    if fmt == "csv":
        assert whole[2]["contacts"] == 1
        assert "mixed_timezone" in set(a["contacts"][1]["reject_rule"])
    ts = b["contacts"][0]["contact_ts"]
    assert (ts.dt.year * 12 + ts.dt.month).is_monotonic_increasing  # the contract's order: month by month


def test_chunked_stage_writes_what_the_whole_stage_writes(raw_book: Path, small_params: Params, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    written = {}
    keys_read: list[str] = []  # a chunked table's keys are read back only when a later table refers to it
    read_keys = ChunkedResult.accepted_keys
    monkeypatch.setattr(ChunkedResult, "accepted_keys",
                        lambda self, c: keys_read.append(self.table) or read_keys(self, c))
    for label, rows in (("whole", 10**9), ("chunked", CHUNK)):
        root = tmp_path / label
        root.mkdir()
        monkeypatch.chdir(root)
        p = _params(small_params, raw_book, "parquet", rows)
        monkeypatch.setattr(stage, "load_params", lambda _path, p=p: p)
        stage.main(stage.base_parser("validate", "").parse_args([]))
        files = sorted(q.relative_to(root) for q in (root / "data").rglob("*") if q.is_file())
        written[label] = {f: pd.read_parquet(root / f) if f.suffix == ".parquet" else (root / f).read_text()
                          for f in files}
        assert not (root / "data/scratch/validate").exists()  # the spill files are gone
        assert not list((root / "data").rglob(".*.tmp-*"))
    assert written["chunked"].keys() == written["whole"].keys()
    assert "policies" in keys_read and "contacts" not in keys_read, keys_read  # 85M contact ids at 5M customers
    assert any(f.name == "contacts.parquet" for f in written["whole"])
    for label in written:  # validate's fingerprints describe the files it published: features will use them
        docs = {f: json.loads(t) for f, t in written[label].items() if f.name == "fingerprints.json"}
        [(f, doc)] = docs.items()
        sums, why = interim.prefixes(doc, interim.table_files(tmp_path / label / f.parent))
        assert sums is not None, why
        assert sums["contacts"].counts[-1] == len(written[label][f.parent / "contacts.parquet"])
        written[label][f] = json.dumps({t: v["days"] for t, v in doc["tables"].items()})  # the files' bytes differ
    for f, df in written["whole"].items():
        if isinstance(df, str):
            assert written["chunked"][f] == df, f
        else:
            pd.testing.assert_frame_equal(written["chunked"][f], df, check_exact=True)


def test_chunked_threshold_message_is_the_whole_tables(raw_book: Path, small_params: Params, tmp_path: Path) -> None:
    messages = []
    for rows in (10**9, CHUNK):
        results, sources, _ = stage.validate_tables(_params(small_params, raw_book, "parquet", rows), tmp_path / "s")
        with pytest.raises(RejectThresholdError) as err:
            stage.check_threshold(results, 0.0, sources)
        messages.append(str(err.value))
    assert messages[1] == messages[0]
    assert "table 'contacts'" in messages[0] and "rule 'duplicate_key'" in messages[0]


def test_a_chunk_that_cannot_be_spilled_stops_the_table(raw_book: Path, small_params: Params, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are written in a thread beside the next chunk's checks: a write that fails (a full disk) still
    stops the stage with its error, after the chunks that were written, not at the end or never."""
    from pipelines import validate_chunks

    spill = validate_chunks._spill
    written: list[int] = []

    def failing(part, spec, folder: Path, i: int) -> list[int]:  # noqa: ANN001
        if i == 1:
            raise OSError(28, "No space left on device", str(folder / "pending/00001.parquet"))
        written.append(i)
        return spill(part, spec, folder, i)

    monkeypatch.setattr(validate_chunks, "_spill", failing)
    with pytest.raises(OSError, match="No space left"):
        stage.validate_tables(_params(small_params, raw_book, "parquet", CHUNK), tmp_path / "s")
    assert written == [0]


def test_duplicates_found_through_colliding_hashes_are_the_same(raw_book: Path, small_params: Params, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The duplicate search groups a 64-bit hash first and compares values only where a hash repeats: with a hash
    that collides for every other row, the exact comparison still marks exactly the same rows."""
    from features.intake import chunked

    p = _params(small_params, raw_book, "parquet", CHUNK)
    real = _frames(stage.validate_tables(p, tmp_path / "real")[0])
    monkeypatch.setattr(chunked, "_hashed", lambda columns: f"(hash({columns}) % 2)")
    coarse = _frames(stage.validate_tables(p, tmp_path / "coarse")[0])
    for name in real:
        for mine, theirs in zip(coarse[name], real[name], strict=True):
            pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    assert (real["contacts"][1]["reject_rule"] == "duplicate_event").sum() >= 1
    assert (real["contacts"][1]["reject_rule"] == "duplicate_key").sum() >= 2
