"""The uplift stage's wiring: the treatments of its rows, read from only their customers' contacts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.snapshots import treatments as tr
from pipelines import interim
from pipelines import uplift as stage
from pipelines.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")


def _contacts(n_customers: int, seed: int) -> pd.DataFrame:
    """Outbound and inbound touches of every purpose, campaign rows with holdouts, around three snapshots."""
    rng = np.random.default_rng(seed)
    n = 20 * n_customers
    start = pd.Timestamp("2025-10-01")
    return pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in rng.integers(0, n_customers, n)],
        "contact_ts": start + pd.to_timedelta(rng.integers(0, 150 * 24 * 60, n), unit="min"),
        "channel": rng.choice(["phone", "sms", "wechat", "visit", "email"], n),
        "direction": rng.choice(["outbound", "outbound", "inbound"], n),
        "purpose": rng.choice(["sales", "event_invite", "service", "quote_followup"], n),
        "holdout": rng.random(n) < 0.1,
        "campaign_id": np.where(rng.random(n) < 0.3, "CMP1", None),
        "outcome": rng.choice(["reached", "no_answer", "purchase"], n)})


def test_the_rows_treatments_read_from_their_customers_contacts_equal_those_of_every_contact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage takes only its rows' customers' contacts (a capped sample of a 5M book: a twentieth of them);
    every treatment, arm and direct-purchase label is the one the whole contact history gives."""
    contacts = _contacts(400, seed=3)
    path = tmp_path / "contacts.parquet"
    contacts.to_parquet(path, index=False)
    monkeypatch.setattr(stage, "CONTACTS", path)
    snaps = [dt.date(2025, 11, 30), dt.date(2025, 12, 31), dt.date(2026, 1, 31)]
    rng = np.random.default_rng(4)
    sample = [f"C{i:04d}" for i in rng.choice(450, 60, replace=False)]  # some without any contact
    rows = pd.DataFrame([(s, c) for s in snaps for c in sample], columns=["snapshot_date", "customer_id"])
    rows["purchase_h"] = rng.integers(0, 2, len(rows)).astype(float)
    got = stage._treated(rows.copy(), PARAMS)
    u, e = PARAMS.uplift, PARAMS.features.engine
    with interim.bounded(e.memory_limit, e.threads) as con:
        con.execute(f"CREATE VIEW contacts AS SELECT * FROM read_parquet('{path.as_posix()}')")
        want = tr.assign_treatment(rows.copy(), tr.treatments(con, snaps, u.treatment_window_days,
                                                               u.experiment_window_days))
        want["purchase_direct"] = tr.direct_purchase(con, want, PARAMS.book.horizon_days).to_numpy()
    assert got["treatment"].notna().sum() > 50 and (got["treatment"] != "none").sum() > 20
    pd.testing.assert_frame_equal(got, want)
