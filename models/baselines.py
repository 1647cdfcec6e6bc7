"""The two baselines every model is compared with: a logistic regression and the playbook's rules.

The rule baseline is what sales teams do today (DOMAIN.md): rank customers by the ability ×
willingness quadrant — 宠爱 pamper first, then 耕耘 cultivate, 维系 maintain, 开发 develop — and, for
churn, by the risk signals the playbook names (complaints, opt-outs, no recent answered touch,
heavy premium burden).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models import gbm
from models.gbm import FeatureSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class RuleParams(BaseModel):
    """Thresholds of the rule-based quadrant (the segments issue refines them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ability_income_rank_min: int = Field(ge=0, le=4)  # income band rank at or above: high ability
    ability_premium_min: float = Field(ge=0)  # or in-force annual premium at or above
    willingness_answered_90d_min: int = Field(ge=0)  # answered touches in 90 days at or above: warm
    willingness_tenure_months_min: int = Field(ge=0)  # or a long relationship with a policy in force


# the columns ``quadrant`` reads: a caller that holds a snapshot's rows narrowed keeps these
QUADRANT_INPUTS = ("income_rank", "premium_inforce", "n_reached_90d", "n_interested_90d", "n_quote_90d",
                   "n_appointment_90d", "n_purchase_90d", "tenure_months", "n_inforce")


def quadrant(df: pd.DataFrame, r: RuleParams) -> pd.Series:
    """Rule quadrant per row: pamper / cultivate / maintain / develop."""
    ability = (df["income_rank"].fillna(-1) >= r.ability_income_rank_min) | (
        df["premium_inforce"].fillna(0) >= r.ability_premium_min)
    will = (df["n_reached_90d"].fillna(0) + df["n_interested_90d"].fillna(0) + df["n_quote_90d"].fillna(0)
            + df["n_appointment_90d"].fillna(0) + df["n_purchase_90d"].fillna(0)
            >= r.willingness_answered_90d_min) | (
        (df["tenure_months"].fillna(0) >= r.willingness_tenure_months_min) & (df["n_inforce"].fillna(0) > 0))
    return pd.Series(np.select([ability & will, ability & ~will, ~ability & will], ["pamper", "cultivate", "maintain"],
                               "develop"), index=df.index)


QUADRANT_RANK = {"pamper": 4, "cultivate": 3, "maintain": 2, "develop": 1}


def rule_purchase_score(df: pd.DataFrame, r: RuleParams) -> np.ndarray:
    """Quadrant rank; ties broken by recent engagement, as an agent working the list would."""
    rank = quadrant(df, r).map(QUADRANT_RANK).to_numpy(float)
    return rank + np.minimum(df["n_contacts_90d"].fillna(0).to_numpy(float), 9) / 10.0


def rule_lapse_score(df: pd.DataFrame) -> np.ndarray:
    """Count of the playbook's risk signals."""
    s = (2 * (df["n_complaint_365d"].fillna(0) > 0).astype(float) + df["opted_out"].fillna(False).astype(float)
         + (df["days_since_last_answered"].fillna(10_000) > 180).astype(float)
         + (df["premium_to_income"].fillna(0) > 0.1).astype(float) + (df["n_inforce_monthly"].fillna(0) > 0))
    return s.to_numpy(float)


def column_median(values: np.ndarray) -> float:
    """The median of one column's present values (0 for a column with none, as ``keep_empty_features`` does).

    SimpleImputer's own ``"median"`` sorts a masked copy of the whole matrix: 6.3 s for 200,000 x 122 on the
    default book, against 0.34 s for this per-column median of the same values (equal statistics).
    """
    return float(np.median(values)) if len(values) else 0.0


def logistic_baseline(spec: FeatureSpec, seed: int) -> Pipeline:
    """Logistic regression on the same features: median-imputed, scaled numerics; one-hot categoricals."""
    # scikit-learn here, not with the module: every stage loads RuleParams from it with its parameters
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy=column_median, add_indicator=True, keep_empty_features=True),
                              StandardScaler()), spec.numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore", dtype=np.float64,
                              categories=[list(range(len(cats))) for cats in spec.categorical.values()]),
         list(spec.categorical)),
    ])
    return Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=500, C=0.1, random_state=seed))])


def lr_frame(X: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The logistic pipeline's input: each categorical as its position among the training categories (-1 when
    missing or unseen, which the encoder ignores: a row of zeros). The same one-hot columns as encoding the values
    as text, without a Python object per value (encoding text was most of the baseline's preprocessing)."""
    codes = {c: gbm.category_codes(X[c], cats) for c, cats in spec.categorical.items()}
    return X.assign(**codes)
