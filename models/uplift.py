"""Incremental effect of a touch per channel (uplift) on purchase and lapse, and its evaluation.

tau_c(x) = P(Y | a selling touch through c now) - P(Y | no touch now), for Y = purchase and lapse within H days.

The learner is an **offset, interaction-constrained LightGBM** (one per outcome):

* it starts from the calibrated model's log-odds (``init_score``), so its capacity goes to the treatment,
  not to re-learning who buys or lapses (an S-learner on all features never splits on a 0.1-point effect);
* its inputs are the treatment (a ``treated`` flag and the ``channel``) and a few effect modifiers (recent
  contacts, answered touches, service: a touch adds less to a customer contacted yesterday);
* interaction constraints allow trees over {treated, modifiers} and over {treated, channel} only, so the
  log-odds effect is additive, ``delta_channel + gamma(modifiers)``: each channel's effect is estimated from
  its own treated rows, and how the effect varies across customers is learned from all treated rows together.

Purchases closed by a quote follow-up are not counted as the first touch's effect (a follow-up is a touch of
its own, made because the first one produced a quote; in the synthetic book 43% of purchases close that way).

Lapse effects are an order of magnitude smaller than purchase effects and lapses are rare (a few dozen per
channel among the treated): the data cannot resolve how they vary across customers, nor reliably across
channels. ``form`` chooses what the lapse effect borrows:

* ``learner``: the learner's own per-customer effect;
* ``per_channel``: the learner's average relative effect per channel, times the calibrated churn probability;
* ``transfer`` (default): the pattern across channels and customers is borrowed from the purchase learner's
  relative effect, with a level and an elasticity that the lapse outcomes estimate by maximum likelihood:
  tau_lapse_c(x) = kappa x (r_c(x) / r0) ** elasticity x p_lapse(x), r_c = tau_purchase_c / p_purchase
  (``models/transfer.py``).

Confounding: the history is observational (agents touch the customers they believe valuable). The offset
carries every feature that drives that targeting (income, holdings, engagement); what is left is checked on
the campaigns' random holdouts with Qini curves (``qini_report``). A channel with fewer than ``min_treated``
treated rows gets no estimate (0): the plan claims no effect it has too little evidence for.

Pure: DataFrames, arrays and typed parameters in; LightGBM boosters and tables out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models import transfer

if TYPE_CHECKING:
    import lightgbm as lgb

CONTROL = "none"
ADDITIVE_PROBE_ROWS = 64  # rows the channel differences of an additive learner are read from (_treated_raw)
OUTCOMES = ("purchase", "lapse")


class LearnerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    modifiers: list[str] = Field(min_length=1)   # features the effect may vary with
    form: Literal["learner", "per_channel", "transfer"]  # what the effect borrows (module docstring)
    # additive: log-odds effect = channel + shared modifiers (channels with little data borrow the pattern);
    # full: each channel's effect may vary with the modifiers in its own way (a randomised experiment)
    interactions: Literal["additive", "full"] = "additive"
    # how much the plan's effect leans on the configured prior (segment.value.propensity_effect, the propensity
    # form) rather than on this learner: effect = (1 - w) x learned + w x prior. 0 trusts the data alone.
    prior_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    learning_rate: float = Field(gt=0, le=1)
    num_leaves: int = Field(ge=2, le=256)
    min_child_samples: int = Field(ge=1)
    max_rounds: int = Field(ge=1, le=100_000)
    early_stopping_rounds: int = Field(ge=1)


class UpliftParams(BaseModel):
    """Treatment definition, support and the two learners (params.yaml ``uplift``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    treatment_window_days: int = Field(ge=1, le=60)    # a touch in [s, s + this) is "a touch now"
    experiment_window_days: int = Field(ge=1, le=90)   # campaign arms counted in [s, s + this)
    min_treated: int = Field(ge=1)                     # treated rows a channel needs for an estimate
    refit_all_snapshots: bool = True                   # score with learners refitted on every labelled snapshot
    anchor_min_holdout: int = Field(default=100, ge=1)  # held-out rows a campaign channel needs to anchor its level
    anchor_prior_sd: float = Field(default=1.0, gt=0)   # prior sd of a channel's scale (models/anchoring.py)
    purchase: LearnerParams
    lapse: LearnerParams


@dataclass(frozen=True)
class EffectModel:
    """A fitted effect learner: the booster, its modifiers, the channels it estimates."""

    outcome: str
    booster: lgb.Booster
    modifiers: list[str]
    channels: list[str]               # the channel categories, in the booster's order
    supported: list[str]              # channels with enough treated rows; the rest get tau = 0
    form: str                         # learner | per_channel | transfer
    relative_effect: dict[str, float] = field(default_factory=dict)  # per channel, on the training rows
    treated: dict[str, int] = field(default_factory=dict)            # treated training rows per channel
    kappa: float = 0.0                # transfer: the relative lapse effect at r0 (models/transfer.py)
    elasticity: float = 1.0           # transfer: how lapse effects follow relative purchase effects
    centre: float = 0.0               # transfer: log r0
    scale: dict[str, float] = field(default_factory=dict)  # per channel, from the experiments (anchoring.py)

    def meta(self) -> dict[str, object]:
        return {"outcome": self.outcome, "modifiers": self.modifiers, "channels": self.channels,
                "supported": self.supported, "form": self.form, "relative_effect": self.relative_effect,
                "treated": self.treated, "kappa": self.kappa, "elasticity": self.elasticity, "centre": self.centre,
                "scale": self.scale,
                "best_iteration": int(self.booster.best_iteration or self.booster.current_iteration())}

    @classmethod
    def from_meta(cls, booster: lgb.Booster, meta: dict[str, Any]) -> EffectModel:
        return cls(str(meta["outcome"]), booster, list(meta["modifiers"]), list(meta["channels"]),
                   list(meta["supported"]), str(meta["form"]),
                   {str(k): float(v) for k, v in dict(meta["relative_effect"]).items()},
                   {str(k): int(v) for k, v in dict(meta["treated"]).items()}, float(meta["kappa"]),
                   float(meta.get("elasticity", 1.0)), float(meta.get("centre", 0.0)),
                   {str(k): float(v) for k, v in dict(meta.get("scale", {})).items()})

    def pooled_relative_effect(self) -> float:
        """Treated-row-weighted mean relative effect over the supported channels."""
        w = np.array([self.treated.get(c, 0) for c in self.supported], float)
        k = np.array([self.relative_effect.get(c, 0.0) for c in self.supported])
        return float((w * k).sum() / w.sum()) if w.sum() > 0 else 0.0


def effect_design(df: pd.DataFrame, modifiers: list[str], channels: list[str],
                  treatment: str | Sequence[str]) -> pd.DataFrame:
    """The learner's input: the modifiers, a treated flag and the channel (missing for no touch)."""
    missing = [c for c in modifiers if c not in df.columns]
    if missing:
        raise KeyError(f"effect modifiers missing from the input: {missing}")
    x = pd.DataFrame({c: pd.to_numeric(df[c], errors="coerce").astype("float64").to_numpy() for c in modifiers})
    t = np.asarray([treatment] * len(df) if isinstance(treatment, str) else list(treatment), dtype=object)
    x["treated"] = (t != CONTROL).astype(float)
    x["channel"] = pd.Categorical(pd.Series(t).where(t != CONTROL), categories=channels)
    return x


def interaction_constraints(n_modifiers: int) -> list[list[int]]:
    """Trees over {modifiers, treated} or over {treated, channel}: an additive log-odds effect."""
    treated, channel = n_modifiers, n_modifiers + 1
    return [[*range(n_modifiers), treated], [treated, channel]]


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def support(treatment: pd.Series, channels: Sequence[str], min_treated: int) -> tuple[dict[str, int], list[str]]:
    """Treated rows per channel, and the channels with at least ``min_treated`` of them."""
    counts = {c: int((treatment == c).sum()) for c in channels}
    return counts, [c for c in channels if counts[c] >= min_treated]


def fit_effects(train: pd.DataFrame, valid: pd.DataFrame | None, y: str,
                baseline: tuple[np.ndarray, np.ndarray | None], channels: Sequence[str], supported: list[str],
                p: LearnerParams, outcome: str, seed: int, num_threads: int = 2, rounds: int | None = None,
                ) -> EffectModel:
    """Fit one outcome's learner on rows with a treatment (``none`` or a channel) and a label.

    ``baseline``: the calibrated probability for the train and valid rows (the offset). Rows treated through an
    unsupported channel are left out, so they do not shape the rest. Without ``valid``, boost exactly
    ``rounds`` rounds (a refit on more snapshots with the number of rounds early stopping chose before).
    """
    from models.lgbm import lgb  # here, not with the module: loading the parameters must not load LightGBM

    chans = list(channels)
    keep_t = train["treatment"].isin([CONTROL, *supported]).to_numpy()
    xt = effect_design(train[keep_t], p.modifiers, chans, train.loc[keep_t, "treatment"].tolist())
    dt = lgb.Dataset(xt, label=train.loc[keep_t, y].to_numpy(float), categorical_feature=["channel"],
                     init_score=logit(baseline[0][keep_t]), free_raw_data=False)
    params = {"objective": "binary", "learning_rate": p.learning_rate, "num_leaves": p.num_leaves,
              "min_child_samples": p.min_child_samples, "bagging_fraction": 0.8, "bagging_freq": 1,
              "lambda_l2": 1.0, "seed": seed, "num_threads": num_threads, "deterministic": True,
              "force_row_wise": True, "verbosity": -1, "metric": "binary_logloss",
              **({"interaction_constraints": interaction_constraints(len(p.modifiers))}
                 if p.interactions == "additive" else {})}
    if valid is None or baseline[1] is None:
        if rounds is None:
            raise ValueError("a fit without a validation set needs a fixed number of rounds")
        booster = lgb.train(params, dt, num_boost_round=max(int(rounds), 1))
    else:
        keep_v = valid["treatment"].isin([CONTROL, *supported]).to_numpy()
        xv = effect_design(valid[keep_v], p.modifiers, chans, valid.loc[keep_v, "treatment"].tolist())
        dv = lgb.Dataset(xv, label=valid.loc[keep_v, y].to_numpy(float), reference=dt,
                         init_score=logit(baseline[1][keep_v]))
        booster = lgb.train(params, dt, num_boost_round=p.max_rounds, valid_sets=[dv], valid_names=["valid"],
                            callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)])
    booster.free_dataset()  # the returned model must not keep the training design alive
    model = EffectModel(outcome, booster, list(p.modifiers), chans, list(supported), p.form)
    kept, base_kept = train[keep_t], baseline[0][keep_t]
    treat = kept["treatment"].to_numpy()
    relative, treated = {}, {}
    for c in chans:  # the effect on the rows actually treated through c, relative to their baseline
        rows = treat == c
        treated[c] = int(rows.sum())
        base = float(np.mean(base_kept[rows])) if rows.any() else 0.0
        # only those rows are predicted: the effect of c elsewhere is not needed (a tenth of the rows)
        relative[c] = (float(_channel_effect(model, kept[rows], base_kept[rows], c).mean() / base)
                       if (c in supported and base > 0) else 0.0)
    return EffectModel(outcome, booster, list(p.modifiers), chans, list(supported), p.form, relative, treated)


def with_transfer(lapse: EffectModel, link: transfer.TransferFit) -> EffectModel:
    """The lapse model in ``transfer`` form, with the level and elasticity fitted on the lapse outcomes."""
    return replace(lapse, kappa=link.kappa, elasticity=link.elasticity, centre=link.centre)


def with_scale(model: EffectModel, scale: dict[str, float]) -> EffectModel:
    """The model with each channel's effects multiplied by ``scale`` (anchored to the experiments); the
    relative effects it reports are scaled alike."""
    rel = {c: v * scale.get(c, 1.0) for c, v in model.relative_effect.items()}
    return replace(model, scale=dict(scale), relative_effect=rel)


def own_channel(values: np.ndarray, treatment: Sequence[str], channels: Sequence[str]) -> np.ndarray:
    """Per row, the column of ``values`` (rows x channels) of the channel that row was treated through
    (NaN for a row treated through none of ``channels``)."""
    j = pd.Index(list(channels)).get_indexer(list(treatment))
    picked = np.asarray(values, float)[np.arange(len(j)), np.maximum(j, 0)]
    return np.where(j >= 0, picked, np.nan)


def _raw(model: EffectModel, df: pd.DataFrame, t: str) -> np.ndarray:
    """The learner's log-odds shift for every row of ``df`` treated through ``t``."""
    raw = model.booster.predict(effect_design(df, model.modifiers, model.channels, t), raw_score=True,
                                num_iteration=model.booster.best_iteration or None)
    return np.asarray(raw, float)


def _prob(model: EffectModel, df: pd.DataFrame, base_logit: np.ndarray, t: str) -> np.ndarray:
    """P(Y | every row of ``df`` treated through ``t``) from the learner and the rows' baseline."""
    return _sigmoid(base_logit + _raw(model, df, t))


def _node_paths_separate(node: dict[str, Any], channel: int, n_modifiers: int, seen: frozenset[str]) -> bool:
    """No root-to-leaf path below ``node`` splits on both the channel and a modifier."""
    if "split_feature" not in node:
        return True
    f = int(node["split_feature"])
    kind = "channel" if f == channel else ("modifier" if f < n_modifiers else "")
    now = seen | {kind} if kind else seen
    if {"channel", "modifier"} <= now:
        return False
    return all(_node_paths_separate(node[side], channel, n_modifiers, now) for side in ("left_child", "right_child"))


def channel_additive(model: EffectModel) -> bool:
    """Whether no path of any tree splits on both the channel and a modifier (``interactions: additive``).

    Then a treated row's log-odds is a sum of terms of its modifiers and terms of its channel: the difference
    between two channels is one number for every row. Checked on the trees themselves, not on the params."""
    it = model.booster.best_iteration or None
    dump = model.booster.dump_model(num_iteration=it if it else -1)
    m = len(model.modifiers)
    return all(_node_paths_separate(t["tree_structure"], m + 1, m, frozenset()) for t in dump["tree_info"])


def _treated_raw(model: EffectModel, df: pd.DataFrame, channels: list[str],
                 shifts: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """The learner's log-odds for every row treated through each of ``channels``.

    For a channel-additive learner (``channel_additive``) one channel is predicted for every row and each other
    channel is that plus its constant difference, read off a few rows: the same values to rounding, at a
    fraction of the cost (each prediction runs every tree over every row). ``shifts`` keeps those differences
    across calls (see ``effects``)."""
    if not channels:
        return {}
    if len(channels) == 1 or not channel_additive(model):
        return {c: _raw(model, df, c) for c in channels}
    ref = _raw(model, df, channels[0])
    shifts = {} if shifts is None else shifts
    head = df.iloc[:ADDITIVE_PROBE_ROWS]
    for c in channels[1:]:
        if c not in shifts:
            shifts[c] = float(np.mean(_raw(model, head, c) - ref[: len(head)]))
    return {channels[0]: ref, **{c: ref + shifts[c] for c in channels[1:]}}


def _channel_effect(model: EffectModel, df: pd.DataFrame, baseline: np.ndarray, c: str) -> np.ndarray:
    """tau of channel ``c`` alone per row (equal, row for row, to its column of ``_learner_effects``)."""
    base = logit(baseline)
    return (_prob(model, df, base, c) - _prob(model, df, base, CONTROL)) * model.scale.get(c, 1.0)


def _learner_effects(model: EffectModel, df: pd.DataFrame, baseline: np.ndarray,
                     shifts: dict[str, float] | None = None) -> np.ndarray:
    base = logit(baseline)
    control = _prob(model, df, base, CONTROL)
    out = np.zeros((len(df), len(model.channels)))
    treated = _treated_raw(model, df, [c for c in model.channels if c in model.supported], shifts)
    for j, c in enumerate(model.channels):
        if c in treated:
            out[:, j] = (_sigmoid(base + treated[c]) - control) * model.scale.get(c, 1.0)
    return out


def effects(model: EffectModel, df: pd.DataFrame, baseline: np.ndarray, channels: Sequence[str],
            purchase_relative: np.ndarray | None = None, shifts: dict[str, float] | None = None) -> np.ndarray:
    """tau per row and channel (rows x ``channels``): P(Y | touch via c) - P(Y | no touch); 0 where unsupported.

    ``baseline``: the calibrated probability of the outcome for each row (the learner's offset).
    ``purchase_relative``: tau_purchase / p_purchase (rows x ``channels``), for the ``transfer`` form.
    ``shifts``: one dict a caller passes to every call on the chunks of one set of rows: an additive learner's
    channel differences are read off the first chunk's first rows and kept there, so the chunks get the values
    the rows would get whole, bit for bit (each chunk's own first rows differ from them in the 16th digit).
    """
    out = np.zeros((len(df), len(channels)))
    base = np.asarray(baseline, float)
    if len(df) == 0:
        return out
    if model.form == "learner":
        tau = _learner_effects(model, df, base, shifts)
        for j, c in enumerate(channels):
            if c in model.channels:
                out[:, j] = tau[:, model.channels.index(c)]
    elif model.form == "per_channel":
        for j, c in enumerate(channels):
            out[:, j] = model.relative_effect.get(c, 0.0) * base
    else:
        if purchase_relative is None:
            raise ValueError("the transfer form needs the purchase effects relative to p_purchase")
        out = transfer.multiplier(purchase_relative, model.kappa, model.elasticity, model.centre) * base[:, None]
    return out


def relative(tau: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Effects relative to the baseline probability (rows x channels)."""
    return tau / np.maximum(np.asarray(baseline, float), 1e-9)[:, None]


# ---------------------------------------------------------------- evaluation on randomised holdouts

def qini_report(y: np.ndarray, treated: np.ndarray, rankings: dict[str, np.ndarray], seed: int = 0,
                ) -> dict[str, float]:
    """Qini AUC (scikit-uplift, normalised to the perfect curve) and uplift in the top 30% per ranking, on
    randomised rows (``treated`` 1 = touched, 0 = held out). A ``random`` ranking is added as the floor."""
    from sklift.metrics import qini_auc_score, uplift_at_k

    rng = np.random.default_rng([seed, 17])  # the random floor: its own stream, not the caller's
    out: dict[str, float] = {"rows": float(len(y)), "treated": float(np.sum(treated)),
                             "ate": float(np.mean(y[treated == 1]) - np.mean(y[treated == 0]))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for name, score in {**rankings, "random": rng.random(len(y))}.items():
            out[f"qini_{name}"] = float(qini_auc_score(y, score, treated))
            out[f"uplift_at_30pct_{name}"] = float(uplift_at_k(y, score, treated, strategy="overall", k=0.3))
    return out


def qini_points(y: np.ndarray, treated: np.ndarray, score: np.ndarray, n_points: int = 50) -> pd.DataFrame:
    """The Qini curve at ``n_points`` + 1 evenly spaced shares of the ranked rows (for DVC plots); the same
    shares whatever the ties in ``score``, so curves of several rankings share one x column."""
    from sklift.metrics import qini_curve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        x, q = qini_curve(y, score, treated)
    share = np.linspace(0.0, 1.0, n_points + 1)
    return pd.DataFrame({"share": share, "qini": np.interp(share * max(len(y), 1), np.asarray(x, float),
                                                           np.asarray(q, float))})


def decile_calibration(pred: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Mean predicted vs mean true effect per decile of the predicted effect (the synthetic book only)."""
    df = pd.DataFrame({"pred": pred, "true": true})
    df["decile"] = pd.qcut(df["pred"].rank(method="first"), 10, labels=False) + 1
    return df.groupby("decile", as_index=False).agg(predicted=("pred", "mean"), true=("true", "mean"))
