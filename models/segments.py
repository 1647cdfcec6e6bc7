"""The playbook's rule segments, contact value, and ML segments and tiers aligned with them.

Everything here is a pure function of one snapshot's features (and, for ML segments, the calibrated
model outputs). Vocabulary (DOMAIN.md): the ability x willingness quadrant 宠爱 pamper / 耕耘 cultivate /
维系 maintain / 开发 develop; value tier 高价值 high / 潜力 potential / 一般 general / 低价值 low;
closeness 炽热 hot / 温和 warm / 冰冷 cold; behaviour 活跃 active / 潜在 prospect / 流失 lapsed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.baselines import QUADRANT_INPUTS, RuleParams, quadrant

QUADRANTS = ("pamper", "cultivate", "maintain", "develop")
QUADRANT_ZH = {"pamper": "宠爱", "cultivate": "耕耘", "maintain": "维系", "develop": "开发"}
VALUE_TIERS = ("high", "potential", "general", "low")
VALUE_TIER_ZH = {"high": "高价值", "potential": "潜力", "general": "一般", "low": "低价值"}
CLOSENESS = ("hot", "warm", "cold")
CLOSENESS_ZH = {"hot": "炽热", "warm": "温和", "cold": "冰冷"}
BEHAVIOURS = ("active", "prospect", "lapsed")
BEHAVIOUR_ZH = {"active": "活跃", "prospect": "潜在", "lapsed": "流失"}
TIERS = ("P1", "P2", "P3", "P4")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentRules(_Strict):
    """Thresholds of the rule segments other than the quadrant (which uses ``RuleParams``)."""

    value_high_premium: float = Field(gt=0)       # in-force annual premium for 高价值
    value_general_premium: float = Field(gt=0)    # ... for 一般 (below: 低价值 unless 潜力)
    potential_income_rank_min: int = Field(ge=0)  # 潜力: income band at least this rank, not yet high value
    hot_days: int = Field(ge=1)                   # an engaged touch within this many days: 炽热
    warm_days: int = Field(ge=1)                  # ... within this many: 温和; otherwise 冰冷

    @model_validator(mode="after")
    def _ordered(self) -> SegmentRules:
        if self.value_general_premium >= self.value_high_premium:
            raise ValueError("value_general_premium must be below value_high_premium")
        if self.hot_days >= self.warm_days:
            raise ValueError("hot_days must be below warm_days")
        return self


class ValueParams(_Strict):
    """Contact value = p_purchase x expected premium x margin + p_lapse x premium at risk x save rate - cost."""

    margin_rate: float = Field(gt=0, le=1)   # share of a new policy's annual premium that is profit
    save_rate: float = Field(ge=0, le=1)     # share of lapses a timely contact prevents
    lapse_loss_rate: float = Field(gt=0, le=1)  # share of the lapsing annual premium the insurer loses
    channel_cost: dict[str, float]           # CNY per contact
    # The propensity form (fallback without treatments): a touch through c moves the purchase probability by
    # propensity_effect[c] x p_purchase and the lapse probability by -propensity_effect[c] x save_rate x p_lapse.
    propensity_effect: dict[str, float] = Field(default_factory=dict)


def incremental_value(tau_purchase: np.ndarray, tau_lapse: np.ndarray, value_sale: np.ndarray,
                      value_lapse: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Net incremental value per customer and channel (CNY): the sale the touch causes times its margin, plus the
    lapse it prevents times the premium lost, minus the touch's cost. (customers x channels)"""
    return (tau_purchase * np.asarray(value_sale, float)[:, None]
            - tau_lapse * np.nan_to_num(np.asarray(value_lapse, float))[:, None] - np.asarray(cost, float)[None, :])


def best_arm(tau: np.ndarray, arms: list[str], value_per_success: float, arm_cost: dict[str, float],
             ) -> pd.DataFrame:
    """Per row: every arm's uplift and net value (uplift x value per success - cost), and the best arm, or none
    when no arm's value is positive."""
    cost = np.array([arm_cost.get(a, 0.0) for a in arms])
    value = tau * value_per_success - cost[None, :]
    rows = np.arange(len(tau))
    best = np.argmax(value, axis=1)
    pays = value[rows, best] > 0
    out = pd.DataFrame({"recommended_arm": np.where(pays, np.asarray(arms, dtype=object)[best], None),
                        "arm_uplift": np.where(pays, tau[rows, best], np.nan),
                        "arm_value": np.where(pays, value[rows, best], np.nan)})
    for j, a in enumerate(arms):
        out[f"tau_{a}"], out[f"value_{a}"] = tau[:, j], value[:, j]
    return out


def propensity_effects(p_purchase: np.ndarray, p_lapse: np.ndarray, channels: list[str], v: ValueParams,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The documented fallback for sources without contact history or treatments: effects proportional to the
    calibrated probabilities, scaled per channel by ``propensity_effect``."""
    e = np.array([v.propensity_effect.get(c, 0.0) for c in channels])
    return (np.asarray(p_purchase, float)[:, None] * e[None, :],
            -np.asarray(p_lapse, float)[:, None] * v.save_rate * e[None, :])


class TierParams(_Strict):
    sizing: Literal["shares", "capacity"]
    shares: tuple[float, float, float, float]      # P1..P4 shares of customers (sizing: shares)
    weeks: int = Field(ge=1)                       # sizing: capacity -> P1 = agent contacts in this many weeks
    p2_capacity_multiple: float = Field(ge=0)      # P2 = this many times P1 (cheaper channels); P3 = rest with
    #                                                positive contact value; P4 = not worth a contact

    @model_validator(mode="after")
    def _shares(self) -> TierParams:
        if abs(sum(self.shares) - 1.0) > 1e-6 or min(self.shares) < 0:
            raise ValueError(f"tier shares must be non-negative and sum to 1, got {list(self.shares)}")
        return self


class CutPoints(_Strict):
    """ML quadrant and tier cut-points: stored as JSON, and frozen across retrains when asked."""

    ability: float                  # expected premium at or above: high ability
    willingness_high_ability: float  # p_purchase at or above, among high ability: pamper (else cultivate)
    willingness_low_ability: float   # ... among low ability: maintain (else develop)
    tiers: tuple[float, float, float]  # contact value at or above: P1, P2, P3 (else P4)


# ---------------------------------------------------------------- rule segments

# the columns ``rule_segments`` (and so ``assign``) reads of a snapshot's rows
RULE_INPUTS = (*QUADRANT_INPUTS, "days_since_last_answered", "n_policies_ever")


def rule_segments(df: pd.DataFrame, quad: RuleParams, r: SegmentRules) -> pd.DataFrame:
    """The playbook's four rule segmentations for each row, as English codes."""
    premium = df["premium_inforce"].fillna(0).to_numpy(float)
    income = df["income_rank"].fillna(-1).to_numpy(float)
    value = np.select([premium >= r.value_high_premium, income >= r.potential_income_rank_min,
                       premium >= r.value_general_premium], ["high", "potential", "general"], "low")
    days = df["days_since_last_answered"].astype("float64").fillna(np.inf).to_numpy(float)
    close = np.select([days <= r.hot_days, days <= r.warm_days], ["hot", "warm"], "cold")
    inforce = df["n_inforce"].fillna(0).to_numpy(float) > 0
    ever = df["n_policies_ever"].fillna(0).to_numpy(float) > 0
    behaviour = np.select([inforce, ever], ["active", "lapsed"], "prospect")
    return pd.DataFrame({"rule_quadrant": quadrant(df, quad).to_numpy(), "value_tier": value,
                         "closeness": close, "behaviour": behaviour}, index=df.index)


# ---------------------------------------------------------------- contact value

def contact_value(p_purchase: np.ndarray, expected_premium: np.ndarray, p_lapse: np.ndarray,
                  premium_inforce: np.ndarray, cost: np.ndarray, v: ValueParams) -> pd.DataFrame:
    """Expected gain of contacting now (CNY) and its parts; see docs/segments.md for a worked example."""
    gain_sale = np.asarray(p_purchase, float) * np.asarray(expected_premium, float) * v.margin_rate
    gain_save = (np.asarray(p_lapse, float) * np.nan_to_num(np.asarray(premium_inforce, float))
                 * v.lapse_loss_rate * v.save_rate)
    return pd.DataFrame({"value_sale": gain_sale, "value_retention": gain_save,
                         "contact_cost": np.asarray(cost, float),
                         "contact_value": gain_sale + gain_save - np.asarray(cost, float)})


# ---------------------------------------------------------------- ML quadrant and tiers

def _threshold_for_count(x: np.ndarray, k: int) -> float:
    """A cut ``t`` so that ``(x >= t).sum()`` is ``k`` (up to ties): the k-th largest value."""
    if k <= 0:
        return float(np.inf)
    if k >= len(x):
        return float(-np.inf)
    return float(np.sort(x)[::-1][k - 1])


def fit_quadrant_cuts(willingness: np.ndarray, ability: np.ndarray, rule_quadrant: pd.Series | np.ndarray,
                      ) -> tuple[float, float, float]:
    """Cut-points giving each ML quadrant as many customers as the rule quadrant of the same name.

    Two axis cuts cannot match four counts, so the willingness cut is set within each ability band: the
    ability cut splits off as many customers as the rule's high-ability quadrants (pamper + cultivate),
    then within each band the willingness cut matches pamper (resp. maintain). Ties can shift a few rows.
    """
    w, a = np.asarray(willingness, float), np.asarray(ability, float)
    counts = pd.Series(np.asarray(rule_quadrant)).value_counts()
    n = {q: int(counts.get(q, 0)) for q in QUADRANTS}
    a_cut = _threshold_for_count(a, n["pamper"] + n["cultivate"])
    high = a >= a_cut
    return (a_cut, _threshold_for_count(w[high], n["pamper"]), _threshold_for_count(w[~high], n["maintain"]))


def ml_quadrant(willingness: np.ndarray, ability: np.ndarray, cuts: CutPoints) -> np.ndarray:
    w, a = np.asarray(willingness, float), np.asarray(ability, float)
    high = a >= cuts.ability
    return np.where(high, np.where(w >= cuts.willingness_high_ability, "pamper", "cultivate"),
                    np.where(w >= cuts.willingness_low_ability, "maintain", "develop"))


def fit_tier_cuts(value: np.ndarray, p: TierParams, weekly_capacity: int = 0) -> tuple[float, float, float]:
    """Contact-value cut-points for P1..P3: by shares of customers, or by contact capacity.

    Capacity: P1 is as many customers as the agents can contact in ``weeks`` (``weekly_capacity`` agent-led
    contacts a week); P2 the next
    ``p2_capacity_multiple`` x as many; P3 everyone else whose contact value is positive; P4 the rest
    (a contact would cost more than it is expected to bring). No one with a non-positive value is in P1-P3.
    """
    v = np.asarray(value, float)
    if p.sizing == "shares":
        sizes = np.round(np.cumsum(p.shares[:3]) * len(v)).astype(int)
        c1, c2, c3 = (_threshold_for_count(v, int(k)) for k in sizes)
        return c1, c2, c3
    positive = float(np.nextafter(0.0, 1.0))
    if weekly_capacity <= 0:
        raise ValueError("tier sizing by capacity needs a positive weekly agent capacity")
    k1 = weekly_capacity * p.weeks
    k2 = k1 + int(round(p.p2_capacity_multiple * k1))
    c2 = max(_threshold_for_count(v, k2), positive)
    return max(_threshold_for_count(v, k1), c2), c2, positive


def tiers(value: np.ndarray, cuts: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(value, float)
    return np.select([v >= cuts[0], v >= cuts[1], v >= cuts[2]], ["P1", "P2", "P3"], "P4")


# ---------------------------------------------------------------- backtest

def backtest_table(df: pd.DataFrame, by: str, order: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per group: customers, expected vs realised purchases and lapses, realised premium.

    Needs columns p_purchase, p_lapse, purchase_h, lapse_h, premium_h and ``by``. Expected counts are sums
    of calibrated probabilities; lapses are counted among holders (rows with a lapse label).
    """
    d = df.assign(_holder=df["lapse_h"].notna(), _p_lapse=np.where(df["lapse_h"].notna(), df["p_lapse"], 0.0))
    g = d.groupby(by, observed=True)
    out = pd.DataFrame({
        "customers": g.size(),
        "expected_purchases": g["p_purchase"].sum(), "realised_purchases": g["purchase_h"].sum(),
        "holders": g["_holder"].sum(),
        "expected_lapses": g["_p_lapse"].sum(), "realised_lapses": g["lapse_h"].sum(),
        "realised_premium": g["premium_h"].sum(),
    })
    out["realised_purchase_rate"] = out["realised_purchases"] / out["customers"]
    out["realised_premium_per_customer"] = out["realised_premium"] / out["customers"]
    out["premium_share"] = out["realised_premium"] / max(float(d["premium_h"].sum()), 1e-12)
    if order is not None:
        out = out.reindex([o for o in order if o in out.index])
    out.index.name = by
    return out.reset_index()


def propensity_backtest(df: pd.DataFrame, by: str = "priority_tier", outcome: str = "purchase") -> pd.DataFrame:
    """Per tier of a one-model set (a tabular source: its target is a purchase or a lapse): customers, expected
    vs realised outcomes (``p_<outcome>`` vs ``<outcome>_h``), the realised rate and the tier's share of them."""
    g = df.groupby(by, observed=True)
    p, y = f"p_{outcome}", f"{outcome}_h"
    out = pd.DataFrame({"customers": g.size(), f"expected_{outcome}s": g[p].sum(), f"realised_{outcome}s": g[y].sum()})
    out[f"realised_{outcome}_rate"] = out[f"realised_{outcome}s"] / out["customers"]
    out[f"{outcome}_share"] = out[f"realised_{outcome}s"] / max(float(df[y].sum()), 1e-12)
    out = out.reindex([t for t in TIERS if t in out.index])
    out.index.name = by
    return out.reset_index()


def is_monotone_decreasing(values: pd.Series | np.ndarray | list[float]) -> bool:
    v = np.asarray(values, float)
    return bool(np.all(np.diff(v) <= 1e-12))


def same_size_comparison(df: pd.DataFrame, ml_mask: np.ndarray, rule_score: np.ndarray,
                         rule_mask: np.ndarray | None = None) -> dict[str, Any]:
    """Realised premium captured by an ML group vs the rule group of the same size.

    The rule group is ``rule_mask`` when given (e.g. the rule 宠爱 segment, equal in size by construction),
    else the top rows by ``rule_score`` (ties broken by row order) with as many rows as the ML group.
    """
    ml_mask = np.asarray(ml_mask, bool)
    prem = df["premium_h"].fillna(0).to_numpy(float)
    if rule_mask is None:
        order = np.argsort(-np.asarray(rule_score, float), kind="stable")
        rule_mask = np.zeros(len(df), bool)
        rule_mask[order[: int(ml_mask.sum())]] = True
    ml_p, rule_p = float(prem[ml_mask].sum()), float(prem[np.asarray(rule_mask, bool)].sum())
    return {"customers_ml": int(ml_mask.sum()), "customers_rule": int(np.asarray(rule_mask).sum()),
            "realised_premium_ml": ml_p, "realised_premium_rule": rule_p,
            "uplift_cny": ml_p - rule_p, "uplift_pct": (ml_p / rule_p - 1.0) * 100 if rule_p > 0 else float("inf")}


# ---------------------------------------------------------------- one snapshot, end to end

def cheapest_permitted_cost(frame: pd.DataFrame, quadrants: np.ndarray, prefs: dict[str, list[str]],
                            quote_channels: list[str], quoting: np.ndarray, blocked: dict[str, str],
                            cost: dict[str, float]) -> np.ndarray:
    """Cost of the cheapest channel in the customer's list (the segment's cadence channels, or the quote
    follow-up channels while a quote is open) that consent permits; 0 when none is permitted.

    Tiers are cut on the expected gain less this cost: is the customer worth a touch at all. The more
    expensive channels the playbook gives valuable segments (visits, events) are a choice made for them
    *because* they are valuable; charging that choice to the ranking would push them down.
    """
    out = np.full(len(frame), np.inf)
    q_arr = np.asarray(quadrants)
    for q in (*QUADRANTS, "_quote"):
        rows = quoting if q == "_quote" else (q_arr == q) & ~quoting
        for ch in (quote_channels if q == "_quote" else prefs[q]):
            ok = rows.copy()
            for flag, blocked_ch in blocked.items():
                if blocked_ch == ch:
                    ok &= ~frame[flag].fillna(False).astype(bool).to_numpy()
            out[ok] = np.minimum(out[ok], cost[ch])
    return np.where(np.isfinite(out), out, 0.0)


def assign(frame: pd.DataFrame, scores: pd.DataFrame, quad: RuleParams, rules: SegmentRules, value: ValueParams,
           tier_params: TierParams, cost_for: Callable[[np.ndarray], np.ndarray], cuts: CutPoints | None = None,
           weekly_capacity: int = 0) -> tuple[pd.DataFrame, CutPoints]:
    """Rule segments, ML quadrant, contact value and priority tier for every row of one snapshot.

    ``cost_for`` maps the ML quadrants to each row's cheapest permitted channel cost; tiers are cut on
    ``priority_value`` = expected gain less that cost (the segment stage re-cuts tiers on the incremental value).
    ``cuts`` None fits the cut-points on this snapshot (label-free: counts and shares only); given, they
    are applied as they are (frozen tiers keep their meaning across retrains).
    """
    seg = rule_segments(frame, quad, rules)
    w, a = scores["p_purchase"].to_numpy(float), scores["expected_premium"].to_numpy(float)
    quad_cuts = (cuts.ability, cuts.willingness_high_ability, cuts.willingness_low_ability) if cuts else \
        fit_quadrant_cuts(w, a, seg["rule_quadrant"].to_numpy())
    partial = CutPoints(ability=quad_cuts[0], willingness_high_ability=quad_cuts[1],
                        willingness_low_ability=quad_cuts[2], tiers=(0.0, 0.0, 0.0))
    ml_q = ml_quadrant(w, a, partial)
    val = contact_value(w, a, scores["p_lapse"].to_numpy(float), frame["premium_inforce"].to_numpy(float),
                        cost_for(ml_q), value)
    val.index = frame.index
    val = val.rename(columns={"contact_cost": "min_channel_cost", "contact_value": "priority_value"})
    tier_cuts = cuts.tiers if cuts else fit_tier_cuts(val["priority_value"].to_numpy(), tier_params, weekly_capacity)
    final = partial.model_copy(update={"tiers": tier_cuts})
    out = pd.concat([scores, val, seg], axis=1)
    out["ml_quadrant"] = ml_q
    out["priority_tier"] = tiers(val["priority_value"].to_numpy(), tier_cuts)
    return out, final


def rule_tiers(rule_score: np.ndarray, ml_tiers: np.ndarray) -> np.ndarray:
    """Today's scheme at the same tier sizes: rank by the rule score, cut at the ML tiers' counts."""
    sizes = np.cumsum([int((np.asarray(ml_tiers) == t).sum()) for t in TIERS])
    order = np.argsort(-np.asarray(rule_score, float), kind="stable")
    out = np.empty(len(order), dtype=object)
    start = 0
    for t, end in zip(TIERS, sizes, strict=True):
        out[order[start:end]] = t
        start = end
    return out.astype(str)
