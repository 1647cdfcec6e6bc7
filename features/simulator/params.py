"""The synthetic book's parameters and the structural constants of its world (docs/synthetic_book.md).

Split out of ``features.simulator.book`` (issue 19): what the world is made of, apart from how it moves.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.intake.contract import (
    ACQUISITION_SOURCES,
    CHANNELS,
    NEEDS_CLASSES,
    PAYMENT_MODES,
    PRODUCT_LINES,
    PURPOSES,
)

CH = list(CHANNELS)  # phone sms wechat email letter visit event service
LINES = list(PRODUCT_LINES)  # life critical_illness medical accident annuity education
NEEDS = list(NEEDS_CLASSES)  # family professional elderly sme
SOURCES = list(ACQUISITION_SOURCES)
MODES = list(PAYMENT_MODES)  # annual semiannual quarterly monthly single
PURP = list(PURPOSES)  # sales quote_followup service renewal claim event_invite care
SOURCES_ARR = np.array(SOURCES)
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


def member(universe: list[str], *names: str) -> np.ndarray:
    """A lookup table over a code list: ``member(PURP, "sales")[purp]`` is ``np.isin(purp, [PURP.index("sales")])``
    without isin's sort on every call (the simulated day asks these a few times; 90 x 9 x 32 days in the truth)."""
    table = np.zeros(len(universe), bool)
    table[[universe.index(name) for name in names]] = True
    return table


SELLING_TOUCH = member(PURP, "sales", "quote_followup", "event_invite")  # a touch that sells (reach, interest)
OPENS_QUOTE = member(PURP, "sales", "event_invite")  # a touch that can open a quote or book a visit
SPOT_SALE_CHANNEL = member(CH, "visit", "event")  # face to face: a sale can close on the spot
SUM_ASSURED_CLAIM = member(LINES, "life", "critical_illness")  # a claim pays the sum assured
SURRENDERABLE = member(LINES, "life", "annuity", "education")  # cash value: a lapse after two years is a surrender


def decay(days: float) -> float:
    return float(0.5 ** (1.0 / days))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
