"""Drift measures, the retraining lock and the as-of edit: fast properties (the cycles are in test_retrain)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import drift as dr
from pipelines import retrain
from tests.conftest import REPO

P = dr.DriftParams(feature_psi_warn=0.2, score_psi_warn=0.1, score_psi_block=0.5, missing_increase_warn=0.1,
                   unseen_category_warn=0.05)


def test_psi_is_zero_for_the_same_population_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(size=20_000))
    same = pd.Series(rng.normal(size=20_000))
    assert dr.psi(ref, same) < 0.01
    shifts = [dr.psi(ref, pd.Series(rng.normal(loc=m, size=20_000))) for m in (0.1, 0.3, 0.6, 1.0)]
    assert shifts == sorted(shifts) and shifts[-1] > 0.25
    cat_ref = pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1]))
    assert dr.psi(cat_ref, cat_ref.sample(frac=1, random_state=1)) < 1e-9
    assert dr.psi(cat_ref, pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.2, 0.3, 0.5]))) > 0.25


def test_feature_drift_flags_missing_values_and_unseen_categories() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "band": rng.choice(["low", "high"], 3000)})
    cur = ref.copy()
    cur.loc[:600, "x"] = np.nan                       # 20% newly missing
    cur.loc[:400, "band"] = "brand-new"               # 13% unseen
    out = dr.feature_drift(ref, cur, ["x", "band"], {"band": ["low", "high"]}, P).set_index("feature")
    assert "missing" in out.loc["x", "warning"]
    assert "unseen_categories" in out.loc["band", "warning"] and out.loc["band", "unseen_category_share"] > 0.1
    calm = dr.feature_drift(ref, ref, ["x", "band"], {"band": ["low", "high"]}, P)
    assert (calm["warning"] == "").all()


def test_score_drift_levels() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"p": rng.beta(1, 30, 5000)})
    assert dr.score_drift(ref, ref, P)["p"]["level"] == "ok"
    assert dr.score_drift(ref, pd.DataFrame({"p": rng.beta(5, 10, 5000)}), P)["p"]["level"] == "block"


def test_set_as_of_edits_only_book_as_of(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = f.read_text(encoding="utf-8")
    assert retrain.set_as_of(f, dt.date(2027, 1, 31)) is True
    after = f.read_text(encoding="utf-8")
    assert 'as_of: "2027-01-31"' in after and after.count("\n") == before.count("\n")
    assert [a for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b][0].strip().startswith(
        "as_of:")
    assert retrain.set_as_of(f, dt.date(2027, 1, 31)) is False  # idempotent
    f.write_text("book:\n  profile: tiny\n  as_of: '2026-09-30'\nfeatures:\n  as_of: '2020-01-01'\n", encoding="utf-8")
    assert retrain.set_as_of(f, dt.date(2026, 10, 31)) is True  # yaml.safe_dump style quotes; only book's
    assert f.read_text(encoding="utf-8").splitlines()[2] == '  as_of: "2026-10-31"'
    assert "'2020-01-01'" in f.read_text(encoding="utf-8")
    comment = "  # as_of: 2026-09-30 in a comment\n"
    f.write_text("book: {profile: tiny, as_of: 2026-09-30}" + comment, encoding="utf-8")
    assert retrain.set_as_of(f, dt.date(2026, 10, 31)) is True  # found by the YAML parser, not by a line pattern
    assert f.read_text(encoding="utf-8") == 'book: {profile: tiny, as_of: "2026-10-31"}' + comment
    f.write_text("book:\n  profile: tiny\n", encoding="utf-8")
    with pytest.raises(retrain.UserError, match="could not find book.as_of"):
        retrain.set_as_of(f, dt.date(2026, 10, 31))


def test_a_second_run_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    lock = tmp_path / "retrain.lock"
    with retrain.run_lock(lock), pytest.raises(retrain.Locked, match="another retraining run holds"), \
            retrain.run_lock(lock):
        pass
    with retrain.run_lock(lock):  # released: free again
        pass
