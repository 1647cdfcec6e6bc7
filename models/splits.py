"""Out-of-time splits of labelled snapshots, purged so no label window crosses into a later split."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    """Snapshot dates per role. Each role's label horizon ends on or before the next role's snapshot."""

    train: list[dt.date]
    valid: dt.date  # early stopping
    calib: dt.date  # calibration: never seen by training or early stopping
    test: dt.date  # out-of-time evaluation: the most recent snapshot with matured labels

    def role(self, d: dt.date) -> str | None:
        if d == self.test:
            return "test"
        if d == self.calib:
            return "calib"
        if d == self.valid:
            return "valid"
        return "train" if d in self.train else None


def iso_days(dates: pd.Series) -> pd.Series:
    """Each row's snapshot date as ISO text (``2026-09-30``), converted once per distinct date: the feature table
    holds a few dozen dates over a million rows, and converting every row (``to_datetime(...).dt.date.astype(str)``)
    took 1.7 s at 1.1M rows, against about 0.1 s."""
    text = {d: str(pd.Timestamp(d).date()) for d in dates.unique()}
    return dates.map(text)


class SplitError(ValueError):
    """Not enough labelled history for an honest out-of-time split."""


def time_split(labelled: list[dt.date], horizon_days: int, min_train: int = 3) -> TimeSplit:
    """Test = latest labelled snapshot; calib, valid and train each end a full horizon earlier.

    A snapshot ``s`` labels ``[s, s + H)``; if a training snapshot's window overlapped the test
    snapshot, the model would be trained on outcomes that happen after the test features were taken,
    which flatters out-of-time results. Purging by one horizon between roles rules that out.
    """
    dates = sorted(set(labelled))
    if not dates:
        raise SplitError("no snapshot has matured labels: extend the history or shorten book.horizon_days")
    gap = dt.timedelta(days=horizon_days)
    test = dates[-1]

    def latest_before(limit: dt.date) -> dt.date:
        ok = [d for d in dates if d + gap <= limit]
        if not ok:
            raise SplitError(f"no labelled snapshot ends its {horizon_days}-day horizon by {limit}; "
                             f"labelled snapshots: {[str(d) for d in dates]}")
        return ok[-1]

    calib = latest_before(test)
    valid = latest_before(calib)
    train = [d for d in dates if d + gap <= valid]
    if len(train) < min_train:
        raise SplitError(f"only {len(train)} training snapshot(s) before {valid} (need {min_train}): "
                         "add features.n_train_snapshots or history")
    return TimeSplit(train=train, valid=valid, calib=calib, test=test)


@dataclass(frozen=True)
class RollingWindow:
    """Row ranges (half-open) of one rolling-window step over time-ordered rows."""

    train: tuple[int, int]
    valid: tuple[int, int]  # the latest rows of the training window, for early stopping
    test: tuple[int, int]


def rolling_windows(n_rows: int, test_start: int, windows: int, train_rows: int,
                    valid_share: float = 0.1) -> list[RollingWindow]:
    """Moro et al.'s rolling window: rows ``[test_start, n_rows)`` cut into ``windows`` consecutive test windows,
    each scored by a model fitted on the ``train_rows`` rows just before it (its latest ``valid_share`` held
    out for early stopping). Every model sees only rows older than the ones it is tested on."""
    if not 0 < test_start < n_rows or windows < 1 or train_rows < 10:
        raise SplitError(f"rolling windows need 0 < test start ({test_start}) < rows ({n_rows}), at least one "
                         f"window ({windows}) and a training window of at least 10 rows ({train_rows})")
    edges = [int(round(test_start + (n_rows - test_start) * k / windows)) for k in range(windows + 1)]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        lo = max(0, a - train_rows)
        cut = a - max(1, int(round((a - lo) * valid_share)))
        out.append(RollingWindow(train=(lo, cut), valid=(cut, a), test=(a, b)))
    return out
