"""The segment stage's pure evaluation: plan volume per week and channel, and the week-one summary."""

from __future__ import annotations

import pandas as pd

from models import backtest as bk


def _seg() -> pd.DataFrame:
    as_of = pd.Timestamp("2026-09-30")
    dates = [as_of, as_of + pd.Timedelta(days=2), as_of + pd.Timedelta(days=8), as_of, None]
    return pd.DataFrame({"next_contact_date": [d.date() if d is not None else None for d in dates],
                         "channel": ["phone", "phone", "sms", "sms", None],
                         "suppressed": [False, False, False, True, True],
                         "contact_value": [10.0, 5.0, 1.0, 0.0, 0.0], "touches_planned": [1, 1, 1, 0, 0],
                         "effect_form": "learned"})


def test_plan_volume_counts_unsuppressed_touches_per_week_beside_capacity() -> None:
    vol = bk.plan_volume(_seg(), pd.Timestamp("2026-09-30"), {"phone": 1, "sms": 9})
    got = {(r.week, r.channel): (r.contacts, r.capacity) for r in vol.itertuples()}
    assert got == {(0, "phone"): (2, 1), (1, "sms"): (1, 9)}  # the suppressed sms touch is not planned
    assert list(vol.columns) == ["week", "week_start", "channel", "contacts", "capacity"]


def test_plan_summary_flags_a_week_over_capacity_and_sums_its_value() -> None:
    s = bk.plan_summary(_seg(), pd.Timestamp("2026-09-30"), ("phone", "sms", "wechat"), 4, {"phone": 1, "sms": 9})
    assert s["week1_touches"] == {"phone": 2, "sms": 1, "wechat": 0} and s["week1_touches_total"] == 3
    assert s["week1_over_capacity"] and s["week1_expected_value"] == 15.0 and s["weeks"] == 4
    assert s["customers_planned"] == 4 and s["touches_planned"] == 3
    ok = bk.plan_summary(_seg(), pd.Timestamp("2026-09-30"), ("phone", "sms"), 4, {"phone": 5, "sms": 9})
    assert not ok["week1_over_capacity"]
