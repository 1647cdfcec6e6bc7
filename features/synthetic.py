"""A synthetic insurance book with known ground truth.

The book is simulated day by day so that models trained on it meet the difficulties of a real one:

* **purchase hazard** from life stage and needs class, ability (income, premium capacity) and
  willingness (relationship, engagement), with a cool-down after a purchase and saturation with
  the number of lines held;
* **contacts** raise a decaying stimulus with channel-specific strength and diminishing returns;
  **fatigue** (many touches in a short time) lowers reach and response and raises complaints and
  opt-outs;
* **quotes** convert better when followed up quickly;
* **lapse hazard** from premium burden, payment mode, policy duration, service contact,
  complaints and claims experience;
* agents target customers they believe are valuable (confounding, as in real books), monthly
  **campaigns** keep a random **holdout**, customers **refer** others, some are never contacted;
* realistic missing values and a small share of **dirty rows** the validate stage must catch.

``simulate_book`` returns the raw tables plus ``truth``: for every customer at the as-of date, the
true probability of a purchase and of a lapse within the horizon under business as usual, with no
outbound contact, and with one sales contact today through each channel.

Pure: parameters in, DataFrames out; the random generator is seeded from the parameters.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.contract import (
    ACQUISITION_SOURCES,
    CHANNELS,
    INCOME_BANDS,
    NEEDS_CLASSES,
    PAYMENT_MODES,
    PRODUCT_LINES,
    PURPOSES,
)

log = logging.getLogger(__name__)

CH = list(CHANNELS)  # phone sms wechat email letter visit event service
LINES = list(PRODUCT_LINES)  # life critical_illness medical accident annuity education
NEEDS = list(NEEDS_CLASSES)  # family professional elderly sme
SOURCES = list(ACQUISITION_SOURCES)
MODES = list(PAYMENT_MODES)  # annual semiannual quarterly monthly single
PURP = list(PURPOSES)  # sales quote_followup service renewal claim event_invite care
OUTBOUND_SALES_CHANNELS = ["phone", "sms", "wechat", "email", "letter", "visit", "event"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldChange(_Strict):
    """Changes of the world from a date on, used to test drift detection and retraining."""

    start: dt.date | None = None
    channel_response: dict[str, float] = Field(default_factory=dict)  # channel -> multiplier
    withdrawn_lines: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_codes(self) -> WorldChange:
        bad = [c for c in self.channel_response if c not in CHANNELS]
        if bad:
            raise ValueError(f"unknown channel(s) {bad}; allowed: {CH}")
        bad = [c for c in self.withdrawn_lines if c not in PRODUCT_LINES]
        if bad:
            raise ValueError(f"unknown product line(s) {bad}; allowed: {LINES}")
        if any(v < 0 for v in self.channel_response.values()):
            raise ValueError("channel_response multipliers must be >= 0")
        return self


class BookSize(_Strict):
    n_customers: int = Field(ge=100, le=5_000_000)
    history_days: int = Field(ge=180, le=3650)
    n_agents: int = Field(ge=1, le=100_000)


class WorldParams(_Strict):
    """How the simulated world behaves (params.yaml's ``generate`` section). Defaults live in params.yaml."""

    seed: int = Field(ge=0)
    truth_replicates: int = Field(ge=1, le=256)
    prospect_share: float = Field(ge=0, le=0.9)
    orphan_share: float = Field(ge=0, le=0.9)  # never contacted by an agent (no servicing agent)
    new_customer_share: float = Field(ge=0, le=0.9)  # acquired inside the history window
    agent_contacts_per_year: float = Field(ge=0, le=200)
    campaigns_per_month: int = Field(ge=0, le=20)
    holdout_share: float = Field(ge=0, le=0.9)
    quote_followup_fast_share: float = Field(ge=0, le=1)
    purchase_base_per_year: float = Field(gt=0, le=1)
    lapse_base_per_year: float = Field(gt=0, le=1)
    missing_share: float = Field(ge=0, le=0.5)
    dirty_share: float = Field(ge=0, le=0.1)
    drift: WorldChange = Field(default_factory=WorldChange)


class SyntheticParams(WorldParams):
    """Everything that shapes the synthetic book: the world, plus the book's as-of date, size and horizon."""

    as_of: dt.date
    size: BookSize
    horizon_days: int = Field(ge=7, le=730)


# ---------------------------------------------------------------------------------------------
# Structural constants of the simulated world (documented in docs/synthetic_book.md)
# ---------------------------------------------------------------------------------------------
#                       phone  sms  wechat email letter visit event service
REACH = np.array([0.55, 0.75, 0.60, 0.30, 0.45, 0.90, 0.85, 0.95])
STIMULUS = np.array([0.9, 0.15, 0.35, 0.08, 0.12, 1.8, 1.3, 0.4])
INTEREST = np.array([0.0, -1.2, -0.5, -1.6, -1.4, 0.8, 0.5, -0.6])  # logit shift of interest
QUOTE = np.array([0.35, 0.0, 0.25, 0.0, 0.0, 0.60, 0.30, 0.10])  # P(quote | interested)
APPOINT = np.array([0.25, 0.0, 0.20, 0.0, 0.0, 0.0, 0.10, 0.0])  # P(appointment | interested, no quote)
FATIGUE = np.array([1.0, 0.5, 0.5, 0.25, 0.2, 1.2, 0.6, 0.3])
SAVE = np.array([0.5, 0.15, 0.3, 0.08, 0.1, 0.9, 0.4, 1.0])  # service effect on lapse
COMPLAINT = np.array([0.012, 0.004, 0.003, 0.001, 0.001, 0.004, 0.002, 0.006])
OPT_OUT = np.array([0.010, 0.012, 0.006, 0.006, 0.002, 0.001, 0.001, 0.0])
AGENT_MIX = np.array([0.32, 0.22, 0.24, 0.04, 0.02, 0.11, 0.05, 0.0])
DURATION = np.array([180.0, np.nan, np.nan, np.nan, np.nan, 2400.0, 6000.0, 300.0])

INCOME_PREMIUM = np.array([2500.0, 5000.0, 10000.0, 22000.0, 55000.0])  # typical annual premium
INCOME_CAPACITY = np.array([60_000.0, 150_000.0, 320_000.0, 700_000.0, 1_800_000.0])
LINE_PREMIUM = np.array([1.2, 1.0, 0.25, 0.1, 2.0, 1.2])
LINE_SUM_MULT = np.array([30.0, 25.0, 150.0, 500.0, 8.0, 10.0])
LINE_CLAIM_RATE = np.array([0.003, 0.012, 0.12, 0.05, 0.0, 0.0])  # per policy-year
NEEDS_LINE_W = np.array([  # rows: needs class; cols: product line
    [0.20, 0.30, 0.20, 0.10, 0.05, 0.15],  # family
    [0.25, 0.25, 0.15, 0.05, 0.25, 0.05],  # professional
    [0.05, 0.10, 0.45, 0.20, 0.20, 0.00],  # elderly
    [0.30, 0.15, 0.15, 0.30, 0.10, 0.00],  # sme
])
SOURCE_W = np.array([0.28, 0.20, 0.10, 0.10, 0.15, 0.10, 0.07])
SOURCE_WILL = np.array([0.6, 0.0, 0.3, -0.4, 0.5, 0.2, -0.7])  # willingness shift by source
INCOME_P = np.array([0.30, 0.32, 0.24, 0.10, 0.04])
MODE_LAPSE = np.array([1.0, 1.25, 1.5, 2.0, 0.0])  # relative lapse hazard by payment mode
PROVINCES = {
    "广东": ["广州", "深圳", "佛山", "东莞"], "江苏": ["南京", "苏州", "无锡"], "浙江": ["杭州", "宁波", "温州"],
    "山东": ["济南", "青岛", "烟台"], "四川": ["成都", "绵阳"], "河南": ["郑州", "洛阳"], "湖北": ["武汉", "宜昌"],
    "北京": ["北京"], "上海": ["上海"], "福建": ["福州", "厦门", "泉州"],
}
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂华建国志红玉兰文斌辉")

HALF_LIFE = {"S": 21.0, "F": 7.0, "C": 180.0, "V": 90.0}
QUOTE_TAU_DAYS = 4.0  # conversion of a quote decays with the delay of its follow-up
QUOTE_MAX_AGE = 30


def _decay(days: float) -> float:
    return float(0.5 ** (1.0 / days))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------
# Growable columnar stores
# ---------------------------------------------------------------------------------------------
class _Store:
    """Columnar append-only store of numpy arrays (contacts, policies, claims)."""

    def __init__(self, dtypes: dict[str, type | str]) -> None:
        self.dtypes = dtypes
        self.chunks: dict[str, list[np.ndarray]] = {k: [] for k in dtypes}

    def add(self, **cols: np.ndarray) -> None:
        n = {len(v) for v in cols.values()}
        assert len(n) == 1 and set(cols) == set(self.dtypes), (n, set(cols) ^ set(self.dtypes))
        if n.pop() == 0:
            return
        for k, v in cols.items():
            self.chunks[k].append(np.asarray(v, dtype=self.dtypes[k]))

    def frame(self) -> dict[str, np.ndarray]:
        return {
            k: (np.concatenate(v) if v else np.empty(0, dtype=self.dtypes[k])) for k, v in self.chunks.items()
        }


class _Policies:
    """In-memory policy table with mutable status (the simulation's book of business)."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cust = np.zeros(capacity, np.int64)
        self.line = np.zeros(capacity, np.int8)
        self.issue = np.zeros(capacity, np.int32)  # day index (may be negative: before the window)
        self.premium = np.zeros(capacity, np.float64)
        self.sum = np.zeros(capacity, np.float64)
        self.mode = np.zeros(capacity, np.int8)
        self.maturity = np.full(capacity, np.iinfo(np.int32).max, np.int32)
        self.status = np.zeros(capacity, np.int8)  # 0 in_force 1 lapsed 2 surrendered 3 matured
        self.end = np.full(capacity, -1, np.int32)  # day the status changed
        self.bad_claim = np.zeros(capacity, np.float32)

    def add(self, cust: np.ndarray, line: np.ndarray, issue: np.ndarray, premium: np.ndarray,
            sum_: np.ndarray, mode: np.ndarray, maturity: np.ndarray) -> np.ndarray:
        k = len(cust)
        if self.n + k > len(self.cust):
            self._grow(max(self.n + k, 2 * len(self.cust)))
        sl = slice(self.n, self.n + k)
        self.cust[sl], self.line[sl], self.issue[sl] = cust, line, issue
        self.premium[sl], self.sum[sl], self.mode[sl], self.maturity[sl] = premium, sum_, mode, maturity
        self.status[sl], self.end[sl], self.bad_claim[sl] = 0, -1, 0
        self.n += k
        return np.arange(sl.start, sl.stop)

    def _grow(self, cap: int) -> None:
        for name in ("cust", "line", "issue", "premium", "sum", "mode", "maturity", "status", "end", "bad_claim"):
            old = getattr(self, name)
            new = np.empty(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------
@dataclass
class SyntheticBook:
    """The raw tables (contract shape, personal fields included), the truth and a summary."""

    customers: pd.DataFrame
    policies: pd.DataFrame
    claims: pd.DataFrame
    contacts: pd.DataFrame
    truth: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"customers": self.customers, "policies": self.policies, "claims": self.claims,
                "contacts": self.contacts}


class _World:
    """State of every customer and policy; ``step`` advances one day."""

    def __init__(self, p: SyntheticParams, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng
        n = p.size.n_customers
        self.n = n
        self.start = pd.Timestamp(p.as_of) - pd.Timedelta(days=p.size.history_days)
        H = p.size.history_days
        # --- who the customers are -------------------------------------------------------------
        new = rng.random(n) < p.new_customer_share
        created = np.where(new, rng.integers(0, H, n), -rng.integers(1, 15 * 365, n))
        self.created = created.astype(np.int32)
        age_at_created = np.clip(rng.normal(37, 11, n), 18, 75)
        self.birth = (self.created - age_at_created * 365.25 - rng.integers(0, 365, n)).astype(np.int32)
        self.female = rng.random(n) < 0.52
        self.source = rng.choice(len(SOURCES), n, p=SOURCE_W)
        inc_shift = np.where(SOURCES_ARR[self.source] == "bank_branch", 0.4, 0.0)
        self.income = np.clip(np.searchsorted(np.cumsum(INCOME_P), rng.random(n)) + np.round(
            rng.normal(inc_shift, 0.3)).astype(int), 0, 4).astype(np.int8)
        self.ability = self.income + rng.normal(0, 0.6, n)
        self.will = SOURCE_WILL[self.source] + rng.normal(0, 1.0, n)
        age_now = self.age(H)
        self.married = rng.random(n) < np.clip((age_now - 22) / 15, 0.05, 0.85)
        self.children = np.where(self.married, rng.poisson(np.clip((age_now - 24) / 12, 0.1, 1.6)), 0)
        self.children = np.minimum(self.children, 5).astype(np.int8)
        needs = np.where(self.children > 0, 0, 1)
        needs = np.where((self.income >= 3) & (rng.random(n) < 0.6), 1, needs)
        needs = np.where((self.children == 0) & self.married & (rng.random(n) < 0.5), 0, needs)
        needs = np.where(age_now >= 60, np.where(rng.random(n) < 0.85, 2, needs), needs)
        needs = np.where(rng.random(n) < 0.06 + 0.03 * self.income, 3, needs)
        self.needs = needs.astype(np.int8)
        self.occupation = np.searchsorted(np.cumsum([0.35, 0.30, 0.15, 0.10, 0.06, 0.04]), rng.random(n)) + 1
        # channel preference (random effect + age pattern): young prefer WeChat, older phone/visits
        self.pref = rng.normal(0, 0.4, (n, len(CH)))
        young = (age_now < 45).astype(float)
        self.pref[:, CH.index("wechat")] += 0.6 * young - 0.4 * (1 - young)
        self.pref[:, CH.index("phone")] += 0.3 * (age_now > 50)
        self.pref[:, CH.index("visit")] += 0.3 * (age_now > 50)
        self.pref[:, CH.index("email")] += 0.4 * (self.needs == 1)
        self.orphan = rng.random(n) < p.orphan_share
        self.agent = np.where(self.orphan, -1, rng.integers(0, p.size.n_agents, n))
        self.prospect = rng.random(n) < p.prospect_share
        # need intensity: how much the customer currently needs cover (life stage)
        self.need = self._life_stage(age_now) + 0.25 * (self.children > 0) + rng.normal(0, 0.5, n)
        # referrals: a referral-sourced customer was brought by an earlier, warmer customer
        self.referred_by = np.full(n, -1, np.int64)
        ref = np.flatnonzero(SOURCES_ARR[self.source] == "referral")
        order = np.argsort(self.created, kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        warm = np.exp(np.clip(self.will[order], -3, 3))
        cum = np.cumsum(warm)
        for i in ref:  # a few thousand at most; a referrer must predate the referee
            r = rank[i]
            if r < 10:
                continue
            u = rng.random() * cum[r - 1]
            self.referred_by[i] = order[np.searchsorted(cum[: r], u)]
        # --- dynamic state ------------------------------------------------------------------------
        self.S = np.zeros(n)
        self.F = np.zeros(n)
        self.C = np.zeros(n)
        self.V = np.zeros(n)
        self.last_purchase = np.full(n, -10_000, np.int32)
        self.quote_day = np.full(n, -1, np.int32)
        self.followup_day = np.full(n, -1, np.int32)
        self.followups = np.zeros(n, np.int8)
        self.visit_day = np.full(n, -1, np.int32)
        self.opted_out = np.zeros(n, bool)
        self.dnc = np.zeros(n, bool)
        self.dns = np.zeros(n, bool)
        self.first_policy = np.full(n, np.iinfo(np.int32).max, np.int32)
        self.pol = _Policies(capacity=int(n * 3.5) + 100)
        self.contacts = _Store({"cust": np.int64, "day": np.int32, "ch": np.int8, "inbound": bool,
                                "purpose": np.int8, "outcome": np.int8, "campaign": np.int32,
                                "holdout": bool})
        self.claims = _Store({"pol": np.int64, "day": np.int32, "amount": np.float64, "status": np.int8})
        self.campaigns = self._campaign_plan(H + p.horizon_days + 1)
        self._today: tuple[np.ndarray, ...] | None = None  # today's touches, for outcomes and recording
        self._initial_policies()

    # --- helpers -------------------------------------------------------------------------------
    def age(self, day: int | np.ndarray) -> np.ndarray:
        return (day - self.birth) / 365.25

    @staticmethod
    def _life_stage(age: np.ndarray) -> np.ndarray:
        # peaks in the family-building years, a second smaller peak around retirement
        return 1.0 - ((age - 38) / 16) ** 2 * 0.5 + 0.35 * np.exp(-(((age - 62) / 6) ** 2))

    def date(self, day: np.ndarray | int) -> pd.DatetimeIndex | pd.Timestamp:
        return self.start + pd.to_timedelta(day, unit="D")

    def drifting(self, day: int) -> bool:
        d = self.p.drift
        return d.start is not None and self.date(day) >= pd.Timestamp(d.start)

    def _held_lines(self) -> np.ndarray:
        held = np.zeros((self.n, len(LINES)), bool)
        m = self.pol.status[: self.pol.n] == 0
        held[self.pol.cust[: self.pol.n][m], self.pol.line[: self.pol.n][m]] = True
        return held

    def _new_policies(self, cust: np.ndarray, day: np.ndarray, held: np.ndarray | None = None) -> None:
        """Issue one policy to each customer in ``cust`` (product, premium, mode, term)."""
        if len(cust) == 0:
            return
        rng, k = self.rng, len(cust)
        w = NEEDS_LINE_W[self.needs[cust]].copy()
        if held is not None:
            w = np.where(held[cust], w * 0.25, w)
        if self.p.drift.withdrawn_lines and np.any([self.drifting(int(d)) for d in np.unique(day)]):
            drifted = np.array([self.drifting(int(d)) for d in day])
            for ln in self.p.drift.withdrawn_lines:
                w[drifted, LINES.index(ln)] = 0.0
        young_kids = self.children[cust] > 0
        w[:, LINES.index("education")] *= young_kids
        w = w / w.sum(1, keepdims=True)
        line = (w.cumsum(1) < rng.random(k)[:, None]).sum(1).clip(0, len(LINES) - 1)
        prem = (INCOME_PREMIUM[self.income[cust]] * LINE_PREMIUM[line] * rng.lognormal(0, 0.5, k)
                * np.exp(0.25 * (self.ability[cust] - self.income[cust])))
        prem = np.round(np.maximum(prem, 50.0), 2)
        sum_ = np.round(prem * LINE_SUM_MULT[line] * rng.lognormal(0, 0.2, k), -2)
        mode_p = np.where(self.income[cust][:, None] >= 3, [0.60, 0.05, 0.05, 0.10, 0.20],
                          [0.50, 0.06, 0.07, 0.27, 0.10])
        mode_p = np.where((line == LINES.index("annuity"))[:, None], [0.50, 0.0, 0.0, 0.05, 0.45], mode_p)
        mode = (mode_p.cumsum(1) < rng.random(k)[:, None]).sum(1).clip(0, len(MODES) - 1)
        term = np.full(k, np.iinfo(np.int32).max, np.int64)
        term = np.where(line == LINES.index("accident"), 365, term)
        term = np.where(line == LINES.index("annuity"), 3650, term)
        term = np.where(line == LINES.index("education"), rng.integers(5, 16, k) * 365, term)
        term = np.where((line == LINES.index("life")) & (rng.random(k) < 0.4), 20 * 365, term)
        maturity = np.minimum(day.astype(np.int64) + term, np.iinfo(np.int32).max).astype(np.int32)
        self.pol.add(cust, line, day, prem, sum_, mode, maturity)
        self.first_policy[cust] = np.minimum(self.first_policy[cust], day)
        self.last_purchase[cust] = np.maximum(self.last_purchase[cust], day)

    def _initial_policies(self) -> None:
        """Policies bought before the window, with lapses and maturities already played out."""
        rng = self.rng
        old = np.flatnonzero((self.created < 0) & ~self.prospect)
        n_pol = 1 + np.minimum(rng.poisson(0.35 + 0.25 * self.income[old]), 4)
        cust = np.repeat(old, n_pol)
        first = np.r_[True, cust[1:] != cust[:-1]]
        issue = np.where(first, self.created[cust],
                         rng.integers(self.created[cust], 0)).astype(np.int32)
        order = np.lexsort((issue, cust))
        cust, issue = cust[order], issue[order]
        start = self.pol.n
        self._new_policies(cust, issue)
        idx = np.arange(start, self.pol.n)
        years = -self.pol.issue[idx] / 365.25
        p_gone = 1 - np.exp(-self.p.lapse_base_per_year * 1.3 * MODE_LAPSE[self.pol.mode[idx]] * years)
        gone = rng.random(len(idx)) < p_gone
        end = rng.integers(self.pol.issue[idx], 0).astype(np.int32)
        matured = self.pol.maturity[idx] < 0
        lapsed = gone & ~matured & (end < self.pol.maturity[idx])
        surrender = lapsed & np.isin(self.pol.line[idx], [0, 4, 5]) & (end - self.pol.issue[idx] > 730)
        self.pol.status[idx[matured]] = 3
        self.pol.end[idx[matured]] = self.pol.maturity[idx[matured]]
        self.pol.status[idx[lapsed]] = np.where(surrender[lapsed], 2, 1)
        self.pol.end[idx[lapsed]] = end[lapsed]

    def _campaign_plan(self, days: int) -> dict[int, list[dict[str, Any]]]:
        """Monthly campaigns: a target rule, a channel, a purpose and a random holdout."""
        rng = self.rng
        plan: dict[int, list[dict[str, Any]]] = {}
        for m0 in range(0, days, 30):
            for k in range(self.p.campaigns_per_month):
                day = int(m0 + rng.integers(0, 30))
                ch = rng.choice(["sms", "phone", "wechat", "email", "letter", "event"],
                                p=[0.35, 0.2, 0.2, 0.1, 0.05, 0.1])
                purpose = "event_invite" if ch == "event" else rng.choice(
                    ["sales", "care", "renewal"], p=[0.6, 0.25, 0.15])
                target = rng.choice(["all", "needs", "income", "holders", "prospects"])
                d = self.date(day)
                plan.setdefault(day, []).append({
                    "id": len([1 for v in plan.values() for _ in v]) + 1,
                    "code": f"CMP{d:%Y%m}{k + 1:02d}", "ch": CH.index(str(ch)),
                    "purpose": PURP.index(str(purpose)), "target": str(target),
                    "needs": int(rng.integers(0, len(NEEDS))), "share": float(rng.uniform(0.05, 0.2)),
                })
        return plan

    # --- one day ---------------------------------------------------------------------------------
    def step(self, t: int, outbound: str = "bau", realise: bool = True,
             acc: dict[str, np.ndarray] | None = None) -> None:
        """Advance one day.

        ``outbound``: "bau" (agents, campaigns, follow-ups, reminders), "none", or a channel name
        (one sales contact today to every active customer through that channel, nothing else).
        ``realise``: draw purchases and lapses (history) or only accumulate their log-survival in
        ``acc`` (ground truth), leaving the book unchanged.
        """
        p, rng, n = self.p, self.rng, self.n
        if realise:
            newc = np.flatnonzero((self.created == t) & ~self.prospect)
            self._new_policies(newc, np.full(len(newc), t, np.int32))
        self.S *= _decay(HALF_LIFE["S"])
        self.F *= _decay(HALF_LIFE["F"])
        self.C *= _decay(HALF_LIFE["C"])
        self.V *= _decay(HALF_LIFE["V"])
        active = self.created <= t
        P = self.pol
        pn = P.n
        inforce = P.status[:pn] == 0
        n_inforce = np.bincount(P.cust[:pn][inforce], minlength=n)
        prem_inforce = np.bincount(P.cust[:pn][inforce], weights=P.premium[:pn][inforce], minlength=n)

        cust_l: list[np.ndarray] = []
        ch_l: list[np.ndarray] = []
        purp_l: list[np.ndarray] = []
        camp_l: list[np.ndarray] = []
        hold_l: list[np.ndarray] = []
        inb_l: list[np.ndarray] = []

        def add(c: np.ndarray, ch: np.ndarray | int, purpose: int, camp: int = -1, hold: bool = False,
                inbound: bool = False) -> None:
            k = len(c)
            if k == 0:
                return
            cust_l.append(c)
            ch_l.append(np.broadcast_to(np.asarray(ch, np.int8), (k,)).copy())
            purp_l.append(np.full(k, purpose, np.int8))
            camp_l.append(np.full(k, camp, np.int32))
            hold_l.append(np.full(k, hold, bool))
            inb_l.append(np.full(k, inbound, bool))

        reachable = active & ~self.orphan
        if outbound == "bau":
            # agents: favour customers they believe are valuable and warm (confounding)
            believed = 0.35 * self.income + 0.35 * (self.will + rng.normal(0, 0.3, n)) + 0.4 * (n_inforce > 0)
            attract = np.exp(believed)
            attract = attract / max(float(attract[reachable].mean()), 1e-9) if reachable.any() else attract
            rate = p.agent_contacts_per_year / 365.0 * attract
            weekday = self.date(t).weekday()
            rate = rate * (0.35 if weekday >= 5 else 1.15)
            who = np.flatnonzero(reachable & ~self.opted_out & (rng.random(n) < rate))
            if len(who):
                mix = np.tile(AGENT_MIX, (len(who), 1))
                rich = self.income[who] >= 3
                mix[rich, CH.index("visit")] *= 2.5
                mix[rich, CH.index("event")] *= 2.0
                mix[self.dnc[who], CH.index("phone")] = 0
                mix[self.dns[who], CH.index("sms")] = 0
                mix /= mix.sum(1, keepdims=True)
                ch = (mix.cumsum(1) < rng.random(len(who))[:, None]).sum(1).clip(0, len(CH) - 2)
                u = rng.random(len(who))
                purpose = np.where(u < 0.6, PURP.index("sales"), np.where(u < 0.85, PURP.index("care"),
                                                                          PURP.index("service")))
                for pu in np.unique(purpose):
                    add(who[purpose == pu], ch[purpose == pu], int(pu))
            # quote follow-ups and booked visits
            fu = np.flatnonzero(reachable & (self.followup_day == t) & (self.quote_day >= 0))
            add(fu, rng.choice([CH.index("phone"), CH.index("wechat"), CH.index("visit")], len(fu),
                               p=[0.5, 0.3, 0.2]), PURP.index("quote_followup"))
            vis = np.flatnonzero(reachable & (self.visit_day == t))
            add(vis, CH.index("visit"), PURP.index("sales"))
            # renewal reminders ten days before a premium anniversary
            due = inforce & (P.mode[:pn] != MODES.index("single")) & ((t - P.issue[:pn]) % 365 == 355)
            rc = np.unique(P.cust[:pn][due])
            rc = rc[reachable[rc] & (rng.random(len(rc)) < 0.7)]
            add(rc, np.where(self.dns[rc], CH.index("phone"), CH.index("sms")), PURP.index("renewal"))
            # campaigns with a random holdout
            for cp in self.campaigns.get(t, []):
                elig = reachable & ~self.opted_out
                tg = cp["target"]
                if tg == "needs":
                    elig &= self.needs == cp["needs"]
                elif tg == "income":
                    elig &= self.income >= 2
                elif tg == "holders":
                    elig &= n_inforce > 0
                elif tg == "prospects":
                    elig &= n_inforce == 0
                if cp["ch"] == CH.index("sms"):
                    elig &= ~self.dns
                if cp["ch"] == CH.index("phone"):
                    elig &= ~self.dnc
                sel = np.flatnonzero(elig & (rng.random(n) < cp["share"]))
                hold = rng.random(len(sel)) < p.holdout_share
                add(sel[~hold], int(cp["ch"]), int(cp["purpose"]), int(cp["id"]))
                add(sel[hold], int(cp["ch"]), int(cp["purpose"]), int(cp["id"]), hold=True)
        elif outbound != "none":
            add(np.flatnonzero(active), CH.index(outbound), PURP.index("sales"))

        # inbound service requests
        inb = np.flatnonzero(active & (rng.random(n) < 0.4 / 365 * (1 + (n_inforce > 0))))
        add(inb, rng.choice([CH.index("phone"), CH.index("wechat"), CH.index("service")], len(inb)),
            PURP.index("service"), inbound=True)

        # --- claims today (they also bring inbound claim-service contacts) ------------------------
        claim_rate = LINE_CLAIM_RATE[P.line[:pn]] / 365.0
        cl = np.flatnonzero(inforce & (rng.random(pn) < claim_rate))
        if len(cl):
            early = (t - P.issue[cl]) < 365
            u = rng.random(len(cl))
            status = np.where(u < np.where(early, 0.25, 0.08), 1, 0)  # 0 paid, 1 rejected (pending set later)
            amount = np.where(np.isin(P.line[cl], [0, 1]), P.sum[cl],
                              np.round(rng.lognormal(8.2, 1.0, len(cl)), 2))
            if realise:
                self.claims.add(pol=cl, day=np.full(len(cl), t, np.int32), amount=amount,
                                status=status.astype(np.int8))
            cc = P.cust[cl]
            rej = status == 1
            np.add.at(self.C, cc[rej], 1.5)
            np.add.at(self.will, cc[rej], -0.4)
            np.add.at(self.will, cc[~rej], 0.15)
            np.add.at(self.V, cc[~rej], 1.0)
            P.bad_claim[cl[rej]] += 1.0
            add(cc[rng.random(len(cc)) < 0.7], CH.index("service"), PURP.index("claim"), inbound=True)

        # --- contact outcomes -----------------------------------------------------------------------
        sale_p = np.zeros(n)  # probability that a contact today closes a sale
        touched = np.zeros(n, bool)
        if cust_l:
            c = np.concatenate(cust_l)
            ch = np.concatenate(ch_l).astype(np.int64)
            purp = np.concatenate(purp_l)
            camp = np.concatenate(camp_l)
            hold = np.concatenate(hold_l)
            inbound = np.concatenate(inb_l)
            k = len(c)
            resp = np.ones(k)
            if self.drifting(t):
                for name, mult in p.drift.channel_response.items():
                    resp[ch == CH.index(name)] *= mult
            fat = self.F[c]
            over = np.maximum(0.0, fat - 2.0)
            logit_r = np.log(REACH[ch] / (1 - REACH[ch])) + self.pref[c, ch] + 0.3 * self.will[c] - 0.35 * over
            reached = inbound | (rng.random(k) < _sigmoid(logit_r) * np.minimum(resp, 1.0))
            reached &= ~hold
            outcome = np.where(reached, 1, 0).astype(np.int8)  # 0 no_answer 1 reached
            sales = np.isin(purp, [PURP.index("sales"), PURP.index("quote_followup"), PURP.index("event_invite")])
            logit_i = (-1.8 + 0.6 * self.will[c] + 0.5 * self.need[c] + self.pref[c, ch] + INTEREST[ch]
                       - 0.4 * over + 0.5 * sales + 0.4 * np.log(np.maximum(resp, 1e-6)))
            interested = reached & (rng.random(k) < _sigmoid(logit_i))
            outcome[interested] = 2
            # quotes and appointments come from selling touches, not from chasing an open quote
            selling = np.isin(purp, [PURP.index("sales"), PURP.index("event_invite")])
            quote = interested & selling & (rng.random(k) < QUOTE[ch])
            outcome[quote] = 3
            appoint = interested & selling & ~quote & (rng.random(k) < APPOINT[ch])
            outcome[appoint] = 4
            neg_mult = np.exp(0.8 * np.maximum(0.0, fat - 1.5)) * (1 + self.C[c])
            complaint = reached & ~inbound & (rng.random(k) < COMPLAINT[ch] * neg_mult)
            p_opt = OPT_OUT[ch] * neg_mult * np.exp(-0.3 * self.will[c])
            opt = reached & ~inbound & ~complaint & (rng.random(k) < p_opt)
            outcome[complaint] = 6
            outcome[opt] = 7
            live = ~hold
            # state updates
            np.add.at(self.F, c[live], FATIGUE[ch[live]])
            stim = STIMULUS[ch] * (1 + 1.5 * interested) * reached * np.maximum(resp, 0)
            np.add.at(self.S, c, stim)
            np.add.at(self.V, c, SAVE[ch] * reached * np.where(sales, 0.5, 1.0))  # any touch keeps the bond
            np.add.at(self.will, c, 0.03 * interested - 0.3 * complaint)
            np.add.at(self.C, c, 1.0 * complaint)
            self.opted_out[c[opt]] = True
            self.dnc[c[opt & (ch != CH.index("sms"))]] = True
            self.dns[c[opt]] = True
            # quotes open a follow-up clock; appointments book a visit
            qc = c[quote]
            self.quote_day[qc] = t
            self.followups[qc] = 0
            fast = rng.random(len(qc)) < p.quote_followup_fast_share
            delay = np.where(fast, 1, rng.choice([3, 5, 8, 12, 40], len(qc)))
            self.followup_day[qc] = t + delay
            ac = c[appoint]
            self.visit_day[ac] = t + rng.integers(2, 8, len(ac))
            # a reached follow-up converts the open quote with a probability that decays with delay
            fu_reach = reached & (purp == PURP.index("quote_followup")) & (self.quote_day[c] >= 0)
            age_q = t - self.quote_day[c]
            recent = (t - self.last_purchase[c]) < 180
            conv = np.where(fu_reach, 0.45 * _sigmoid(self.will[c] + 0.5) * np.exp(-(age_q - 1) / QUOTE_TAU_DAYS)
                            * np.where(recent, 0.3, 1.0), 0.0)
            # sale on the spot at visits and events, from stimulus and interest
            spot = np.where(interested & np.isin(ch, [CH.index("visit"), CH.index("event")]), 0.05, 0.0)
            q_sale = 1 - (1 - conv) * (1 - spot)
            np.maximum.at(sale_p, c, q_sale)
            touched[c[reached]] = True
            # schedule the next follow-up of a still-open quote (up to three)
            again = c[(purp == PURP.index("quote_followup")) & ~fu_reach | (fu_reach & (conv < 0.5))]
            again = again[self.followups[again] < 2]
            self.followups[again] += 1
            self.followup_day[again] = t + rng.choice([2, 3, 5], len(again))
            self._today = (c, ch, purp, camp, hold, inbound, outcome)
        else:
            self._today = None
        expired = (self.quote_day >= 0) & (t - self.quote_day > QUOTE_MAX_AGE)
        self.quote_day[expired] = -1

        # --- purchase hazard -------------------------------------------------------------------------
        cool = np.where(t - self.last_purchase < 180, -1.3, 0.0)
        eta = (0.55 * self.need + 0.30 * self.ability + 0.45 * self.will - 0.35 * np.minimum(n_inforce, 5)
               + cool + 0.4 * (n_inforce == 0) * ~self.prospect - 0.3 * self.prospect - 1.2)
        lift = 1 + 3.0 * (1 - np.exp(-self.S))
        fat_pen = np.exp(-0.35 * np.maximum(0.0, self.F - 3.0))
        h = p.purchase_base_per_year / 365.0 * np.exp(eta) * lift * fat_pen
        p_buy = 1 - (1 - np.minimum(h, 0.5)) * (1 - sale_p)
        p_buy = np.where(active, p_buy, 0.0)

        # --- lapse hazard (per in-force, premium-paying or surrenderable policy) ---------------------
        idx = np.flatnonzero(inforce)
        pc = P.cust[idx]
        burden = np.log(np.maximum(prem_inforce[pc], 1.0) / INCOME_CAPACITY[self.income[pc]] / 0.05)
        dur = t - P.issue[idx]
        dur_eff = np.where(dur < 730, 0.5, np.where(dur > 1825, -0.3, 0.0))
        mode = P.mode[idx]
        base = np.where(mode == MODES.index("single"), 0.25, MODE_LAPSE[mode])
        lh = (p.lapse_base_per_year / 365.0 * base
              * np.exp(0.8 * burden + 0.5 * self.C[pc] - 0.7 * (1 - np.exp(-self.V[pc])) - 0.3 * self.will[pc]
                       + dur_eff + 0.6 * P.bad_claim[idx]))
        lh = np.minimum(lh, 0.5)

        if realise:
            buy = np.flatnonzero(rng.random(n) < p_buy)
            held = self._held_lines() if len(buy) else None
            self._new_policies(buy, np.full(len(buy), t, np.int32), held)
            self.S[buy] *= 0.3
            self.quote_day[buy] = -1  # the quote is closed: no more chasing, no booked visit
            self.followup_day[buy] = -1
            self.visit_day[buy] = -1
            if self._today is not None:  # a purchase on the day of a reached touch is that touch's outcome
                c, ch, purp, camp, hold, inbound, outcome = self._today
                bought = np.zeros(n, bool)
                bought[buy] = True
                hit = bought[c] & (outcome >= 1) & (outcome <= 4)
                first_hit = hit & ~pd.Series(np.where(hit, c, -1 - np.arange(len(c)))).duplicated().to_numpy()
                outcome[first_hit] = 5
            lapse = idx[rng.random(len(idx)) < lh]
            surr = np.isin(P.line[lapse], [0, 4, 5]) & ((t - P.issue[lapse]) > 730)
            P.status[lapse] = np.where(surr, 2, 1)
            P.end[lapse] = t
            mat = np.flatnonzero((P.status[:pn] == 0) & (P.maturity[:pn] <= t))
            P.status[mat] = 3
            P.end[mat] = P.maturity[mat]
            if self._today is not None:
                c, ch, purp, camp, hold, inbound, outcome = self._today
                self.contacts.add(cust=c, day=np.full(len(c), t, np.int32), ch=ch, inbound=inbound,
                                  purpose=purp, outcome=np.where(hold, -1, outcome), campaign=camp, holdout=hold)
        else:
            assert acc is not None
            acc["purchase"] += np.log1p(-np.minimum(p_buy, 1 - 1e-12))
            m = acc["lapse_mask"][idx]
            np.add.at(acc["lapse"], pc[m], np.log1p(-lh[m]))


SOURCES_ARR = np.array(SOURCES)


# ---------------------------------------------------------------------------------------------
# Assembling tables
# ---------------------------------------------------------------------------------------------
def _personal(rng: np.random.Generator, w: _World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = w.n
    names = (np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)].astype(object)
             + np.array(GIVEN)[rng.integers(0, len(GIVEN), n)].astype(object)
             + np.where(rng.random(n) < 0.6, np.array(GIVEN)[rng.integers(0, len(GIVEN), n)], "").astype(object))
    phones = np.char.add(np.char.add("1", rng.choice(list("3456789"), n)),
                         np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9)).astype(object)
    births = pd.DatetimeIndex(w.date(w.birth)).strftime("%Y%m%d").to_numpy()
    region = rng.integers(110000, 659999, n).astype(str)
    seq = np.char.zfill(rng.integers(0, 999, n).astype(str), 3)
    body = np.char.add(np.char.add(region, births.astype(str)), seq)
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    digits = np.array([list(b) for b in body], dtype=int)
    check = np.array(list("10X98765432"))[(digits * weights).sum(1) % 11]
    ids = np.char.add(body, check).astype(object)
    return names, phones, ids


def _tables(w: _World, p: SyntheticParams, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    n, H = w.n, p.size.history_days
    as_of = pd.Timestamp(p.as_of)
    cid = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)
    prov_names = list(PROVINCES)
    prov = rng.integers(0, len(prov_names), n)
    city = np.array([PROVINCES[prov_names[i]][rng.integers(0, len(PROVINCES[prov_names[i]]))] for i in prov],
                    dtype=object)
    age_now = w.age(H)
    marital = np.where(w.married, "married", np.where(age_now > 70, "widowed", "single")).astype(object)
    marital[w.married & (rng.random(n) < 0.08)] = "divorced"
    names, phones, ids = _personal(rng, w)
    fp = w.first_policy
    customers = pd.DataFrame({
        "customer_id": cid,
        "created_date": w.date(w.created).normalize(),
        "birth_date": w.date(w.birth).normalize(),
        "gender": np.where(w.female, "F", "M").astype(object),
        "province": np.array(prov_names, dtype=object)[prov],
        "city": city,
        "occupation_class": pd.array(w.occupation, dtype="Int64"),
        "income_band": np.array(list(INCOME_BANDS), dtype=object)[w.income],
        "marital_status": marital,
        "children": pd.array(w.children.astype(int), dtype="Int64"),
        "needs_class": np.array(NEEDS, dtype=object)[w.needs],
        "acquisition_source": SOURCES_ARR.astype(object)[w.source],
        "referred_by": np.where(w.referred_by >= 0, cid[np.maximum(w.referred_by, 0)], None),  # type: ignore[call-overload]
        "first_policy_date": pd.Series(w.date(np.where(fp < H, fp, 0))).where(fp < H).dt.normalize().to_numpy(),
        "agent_id": np.where(w.agent >= 0,  # type: ignore[call-overload]
                             np.char.add("A", np.char.zfill(np.maximum(w.agent, 0).astype(str), 4)),
                             None).astype(object),
        "do_not_call": w.dnc.copy(),
        "do_not_sms": w.dns.copy(),
        "name": names, "phone": phones, "id_number": ids,
    })
    customers = customers[w.created < H].reset_index(drop=True)

    P = w.pol
    k = P.n
    st = np.array(["in_force", "lapsed", "surrendered", "matured"], dtype=object)[P.status[:k]]
    end = P.end[:k]

    def day_or_nat(mask: np.ndarray, days: np.ndarray) -> np.ndarray:
        return pd.Series(w.date(np.where(mask, days, 0))).where(mask).dt.normalize().to_numpy()

    mat_known = P.maturity[:k] < np.iinfo(np.int32).max
    policies = pd.DataFrame({
        "policy_id": np.char.add("P", np.char.zfill(np.arange(1, k + 1).astype(str), 8)).astype(object),
        "customer_id": cid[P.cust[:k]],
        "product_line": np.array(LINES, dtype=object)[P.line[:k]],
        "issue_date": w.date(P.issue[:k]).normalize(),
        "status": st,
        "lapse_date": day_or_nat(P.status[:k] == 1, end),
        "surrender_date": day_or_nat(P.status[:k] == 2, end),
        "maturity_date": day_or_nat(mat_known, np.minimum(P.maturity[:k], 60 * 365)),
        "annual_premium": P.premium[:k],
        "sum_assured": P.sum[:k],
        "payment_mode": np.array(MODES, dtype=object)[P.mode[:k]],
    })
    policies = policies[P.issue[:k] < H].reset_index(drop=True)

    cl = w.claims.frame()
    cstat = np.array(["paid", "rejected", "pending"], dtype=object)[cl["status"]]
    cstat[(H - cl["day"]) <= 30] = "pending"
    claims = pd.DataFrame({
        "claim_id": np.char.add("L", np.char.zfill(np.arange(1, len(cl["pol"]) + 1).astype(str), 8)).astype(object),
        "policy_id": np.char.add("P", np.char.zfill((cl["pol"] + 1).astype(str), 8)).astype(object),
        "customer_id": cid[P.cust[cl["pol"]]],
        "claim_date": w.date(cl["day"]).normalize(),
        "amount": cl["amount"],
        "status": cstat,
    })

    ct = w.contacts.frame()
    m = len(ct["cust"])
    secs = rng.integers(9 * 3600, 20 * 3600, m)
    ts = w.start + pd.to_timedelta(ct["day"].astype(np.int64) * 86400 + secs, unit="s")
    outcome_codes = np.array(["no_answer", "reached", "interested", "quote", "appointment", "purchase",
                              "complaint", "opt_out"], dtype=object)
    outcome = np.where(ct["outcome"] >= 0, outcome_codes[np.maximum(ct["outcome"], 0)], None)
    dur = DURATION[ct["ch"]] * rng.lognormal(0, 0.5, m)
    dur = np.where(ct["outcome"] >= 1, np.round(dur), np.where(ct["ch"] == CH.index("phone"), 0.0, np.nan))
    dur[ct["holdout"]] = np.nan
    agent = w.agent[ct["cust"]]
    agent = np.where(ct["inbound"] & (rng.random(m) < 0.5), -1, agent)
    camp_code = {c["id"]: c["code"] for v in w.campaigns.values() for c in v}
    contacts = pd.DataFrame({
        "contact_id": np.char.add("K", np.char.zfill(np.arange(1, m + 1).astype(str), 9)).astype(object),
        "customer_id": cid[ct["cust"]],
        "contact_ts": ts.astype("datetime64[us]"),
        "channel": np.array(CH, dtype=object)[ct["ch"]],
        "direction": np.where(ct["inbound"], "inbound", "outbound").astype(object),
        "purpose": np.array(PURP, dtype=object)[ct["purpose"]],
        "outcome": outcome,
        "duration_sec": dur,
        "agent_id": np.where(agent >= 0,  # type: ignore[call-overload]
                             np.char.add("A", np.char.zfill(np.maximum(agent, 0).astype(str), 4)),
                             None).astype(object),
        "campaign_id": np.array([camp_code.get(int(x)) for x in ct["campaign"]], dtype=object)
        if m else np.array([], dtype=object),
        "holdout": ct["holdout"],
    })
    contacts = contacts.sort_values(["contact_ts", "contact_id"], kind="stable").reset_index(drop=True)
    _ = as_of
    return {"customers": customers, "policies": policies, "claims": claims, "contacts": contacts}


def _add_missing(t: dict[str, pd.DataFrame], share: float, rng: np.random.Generator) -> None:
    """Blank optional fields the way real archives do (incomplete profiles, unknown sums)."""
    cu = t["customers"]
    for col, mult in (("occupation_class", 1.0), ("income_band", 1.6), ("marital_status", 0.6),
                      ("children", 1.0), ("city", 0.4), ("province", 0.2), ("name", 0.1), ("phone", 1.0)):
        m = rng.random(len(cu)) < share * mult
        cu.loc[m, col] = None
    po = t["policies"]
    po.loc[rng.random(len(po)) < share * 0.5, "sum_assured"] = np.nan


def _inject_dirt(t: dict[str, pd.DataFrame], share: float, as_of: dt.date,
                 rng: np.random.Generator) -> dict[str, dict[str, int]]:
    """Corrupt a small share of rows in the ways real exports go wrong; return what was done.

    Columns are cast to text where a corruption needs a non-conforming value, as a CSV export would.
    """
    done: dict[str, dict[str, int]] = {}
    if share <= 0:
        return done
    after = pd.Timestamp(as_of) + pd.Timedelta(days=rng.integers(3, 60))

    used: dict[int, set[int]] = {}

    def pick(df: pd.DataFrame, k: int) -> np.ndarray:
        """Rows not corrupted yet in this table, so every injected fault is a row of its own."""
        taken = used.setdefault(id(df), set())
        free = np.setdiff1d(np.arange(len(df)), np.fromiter(taken, int, len(taken)))
        out = rng.choice(free, size=min(k, len(free)), replace=False) if len(free) else np.array([], int)
        taken.update(int(i) for i in out)
        return out

    def count(table: str, rule: str, k: int) -> None:
        if k:
            done.setdefault(table, {})[rule] = done.setdefault(table, {}).get(rule, 0) + int(k)

    cu = t["customers"]
    k = max(1, int(len(cu) * share / 4))
    for col in ("gender", "income_band"):
        cu[col] = cu[col].astype(object)
    i = pick(cu, k)
    cu.loc[i, "gender"] = "X"
    count("customers", "allowed_values", len(i))
    i = pick(cu, k)
    cu.loc[i, "birth_date"] = after
    count("customers", "future_date", len(i))
    dup = cu.iloc[pick(cu, k)].copy()
    dup["city"] = "未知"
    t["customers"] = pd.concat([cu, dup], ignore_index=True)
    count("customers", "duplicate_key", len(dup))

    po = t["policies"]
    k = max(1, int(len(po) * share / 4))
    i = pick(po, k)
    po.loc[i, "annual_premium"] = -po.loc[i, "annual_premium"]
    count("policies", "range", len(i))
    po["status"] = po["status"].astype(object)
    i = pick(po, k)
    po.loc[i, "status"] = "Lapsed "
    count("policies", "allowed_values", len(i))
    i = pick(po, k)
    po.loc[i, "customer_id"] = "C9" + pd.Series(range(len(i))).astype(str).str.zfill(7).to_numpy()
    count("policies", "orphan_reference", len(i))

    cl = t["claims"]
    if len(cl):
        k = max(1, int(len(cl) * share / 2))
        i = pick(cl, k)
        cl.loc[i, "amount"] = -1.0
        count("claims", "range", len(i))

    co = t["contacts"]
    k = max(1, int(len(co) * share / 4))
    co["channel"] = co["channel"].astype(object)
    i = pick(co, k)
    co.loc[i, "channel"] = "fax"
    count("contacts", "allowed_values", len(i))
    i = pick(co, k)
    co.loc[i, "contact_ts"] = after + pd.Timedelta(hours=10)
    count("contacts", "future_date", len(i))
    live = co.index[~co["holdout"].astype(bool) & co["channel"].isin(CH)].to_numpy()
    live = np.setdiff1d(live, np.fromiter(used.get(id(co), set()), int))  # not a row corrupted above
    src = co.loc[rng.choice(live, size=min(k, len(live)), replace=False)].copy()
    src["contact_id"] = "KD" + pd.Series(range(len(src))).astype(str).str.zfill(8).to_numpy()
    t["contacts"] = pd.concat([co, src], ignore_index=True)
    count("contacts", "duplicate_event", len(src))
    return done


def _truth(w: _World, p: SyntheticParams, progress: Callable[[str], None], stream: int = 7) -> pd.DataFrame:
    """True purchase/lapse probabilities over the horizon from the as-of date, per scenario.

    Each scenario is averaged over ``truth_replicates`` forward runs. Replicate r uses the same random numbers
    on each day in every scenario (common random numbers, stream ``[seed, stream, r, day]``), so the effect of
    a touch (scenario minus "none") is not buried under two unrelated draws of claims and service calls: with
    independent streams, two 4-replicate truths' SMS lapse effects per customer correlated 0.06 and the oracle
    plan chased that noise (docs/synthetic_book.md).
    """
    H = p.size.history_days
    n = w.n
    P = w.pol
    inforce_at = np.zeros(P.n, bool)
    inforce_at[: P.n] = P.status[: P.n] == 0
    holder = np.bincount(P.cust[: P.n][inforce_at], minlength=n) > 0
    scenarios = ["bau", "none"] + OUTBOUND_SALES_CHANNELS
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    template = copy.copy(w)
    template.contacts = None  # type: ignore[assignment]  # nothing is recorded in truth mode
    template.claims = None  # type: ignore[assignment]
    for sc in scenarios:
        pur = np.zeros(n)
        lap = np.zeros(n)
        for r in range(p.truth_replicates):
            sim = copy.deepcopy(template)
            acc = {"purchase": np.zeros(n), "lapse": np.zeros(n),
                   "lapse_mask": np.r_[inforce_at, np.zeros(len(sim.pol.cust) - P.n, bool)]}
            for d in range(p.horizon_days):
                # common random numbers: replicate r draws the same numbers on day d in every scenario, so a
                # scenario's difference from "none" is the touch's effect, not two unrelated draws of claims
                sim.rng = np.random.default_rng([p.seed, stream, r, d])
                mode = sc if sc in ("bau", "none") else (sc if d == 0 else "none")
                sim.step(H + d, outbound=mode, realise=False, acc=acc)
            pur += -np.expm1(acc["purchase"])
            lap += -np.expm1(acc["lapse"])
        out[sc] = (pur / p.truth_replicates, lap / p.truth_replicates)
        progress(f"truth scenario {sc}: mean p_purchase {out[sc][0][w.created < H].mean():.4f}")
    keep = w.created < H
    cid = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)
    truth = pd.DataFrame({"customer_id": cid, "as_of": pd.Timestamp(p.as_of), "horizon_days": p.horizon_days,
                          "holds_in_force": holder})
    truth["p_purchase"] = out["bau"][0]
    truth["p_lapse"] = np.where(holder, out["bau"][1], np.nan)
    truth["p_purchase_no_contact"] = out["none"][0]
    truth["p_lapse_no_contact"] = np.where(holder, out["none"][1], np.nan)
    for ch in OUTBOUND_SALES_CHANNELS:
        truth[f"p_purchase_{ch}"] = out[ch][0]
        truth[f"p_lapse_{ch}"] = np.where(holder, out[ch][1], np.nan)
    # the latent drivers, for diagnostics only (never features)
    truth["latent_ability"] = w.ability
    truth["latent_willingness"] = w.will
    truth["latent_need"] = w.need
    return truth[keep].reset_index(drop=True)


def simulate_book(p: SyntheticParams, progress: Callable[[str], None] | None = None) -> SyntheticBook:
    """Simulate the book up to the day before ``as_of`` and the truth from ``as_of`` on."""
    say = progress or (lambda msg: log.info(msg))
    rng = np.random.default_rng(p.seed)
    w = _World(p, rng)
    H = p.size.history_days
    say(f"simulating {p.size.n_customers:,} customers over {H} days up to {p.as_of}")
    for t in range(H):
        w.step(t)
        if (t + 1) % 180 == 0 or t == H - 1:
            say(f"  day {t + 1}/{H}: {w.pol.n:,} policies, {sum(len(c) for c in w.contacts.chunks['cust']):,} contacts")
    # pending claims and the extract happen at as-of; truth runs forward from a copy of the state
    truth = _truth(w, p, say)
    trng = np.random.default_rng([p.seed, 99])
    tables = _tables(w, p, trng)
    _add_missing(tables, p.missing_share, trng)
    dirt = _inject_dirt(tables, p.dirty_share, p.as_of, trng)
    summary = {
        "as_of": str(p.as_of),
        "rows": {k: int(len(v)) for k, v in tables.items()},
        "dirty_rows_injected": dirt,
        "holders_share": float(truth["holds_in_force"].mean()),
        "mean_true_p_purchase": float(truth["p_purchase"].mean()),
        "mean_true_p_lapse_holders": float(truth["p_lapse"].mean()),
        "customers_without_contacts": int(
            (~tables["customers"]["customer_id"].isin(tables["contacts"]["customer_id"])).sum()),
    }
    return SyntheticBook(truth=truth, summary=summary, **tables)
