"""The declaration of a one-file (tabular) source: where it is, its target(s), what must never be a feature.

``validate.source.tabular`` in params.yaml parses into ``TabularSpec``; ``features/intake/tabular.py`` validates a file
against it. Kept apart so the rules a user writes are read in one place (docs/your_data.md lists them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.intake.capabilities import LABELS

OUTCOME_WORDS = {"purchase": ("purchase", "新投保"), "lapse": ("lapse or churn", "流失/退保")}

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitShares(_Strict):
    """Shares of the labelled rows per role; train is the rest (the earliest rows when time-ordered)."""

    valid: float = Field(gt=0, lt=0.5)   # early stopping
    calib: float = Field(gt=0, lt=0.5)   # calibration, never seen by training
    test: float = Field(gt=0, lt=0.5)    # evaluation: the latest rows when time-ordered
    # time_order none and at most this many labelled rows: cross-fit instead (every row trains the final model,
    # every row is scored out of fold; models/crossfit.py). 0: always split.
    crossfit_max_rows: int = Field(default=20_000, ge=0)
    folds: int = Field(default=5, ge=3, le=20)  # cross-fitting's folds

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitShares:
        if self.valid + self.calib + self.test > 0.8:
            raise ValueError("valid + calib + test must leave at least 20% of the rows for training")
        return self


class ExperimentSpec(_Strict):
    """A randomised experiment in the file: which arm each row received, and what a success is worth."""

    treatment: str = Field(min_length=1)      # the column naming each row's arm
    control: str = Field(min_length=1)        # its value for the random control group (no touch)
    arms: list[str] = []                      # the arms' values (default: every other value in the file)
    value_per_success: float = Field(gt=0)    # CNY one more positive outcome is worth
    arm_cost: dict[str, float] = {}           # CNY per touch of an arm (default 0)
    modifiers: list[str] = []                 # numeric columns the effect may vary with (default: all numeric)


class OtherTarget(_Strict):
    """A second flag in the same file, of the other kind (a book with both a purchase and a lapse flag)."""

    target: str = Field(min_length=1)
    target_kind: Literal["purchase", "lapse"]
    positive: list[str] = Field(min_length=1)
    negative: list[str] = Field(min_length=1)
    target_en: str | None = None
    target_zh: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _churn_is_lapse(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("target_kind", "")).strip().lower() == "churn":
            data = {**data, "target_kind": "lapse"}
        return data

    @field_validator("positive", "negative", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any) -> Any:
        return _refuse_yaml_booleans(v)


def _refuse_yaml_booleans(v: Any) -> Any:
    """YAML reads unquoted Yes/No/On/Off/True/False as booleans; say so instead of "not a valid string"."""
    for x in v if isinstance(v, list) else []:
        if isinstance(x, bool):
            raise ValueError(f"got the YAML boolean {x}: YAML reads unquoted Yes/No/On/Off/True/False as "
                             "booleans; quote it: 'Yes'")
    return v


class ValueLabel(_Strict):
    """How a coded value reads in reasons, in English and Chinese."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class TabularSpec(_Strict):
    """A one-file source: where it is, which column is the target, what must never be a feature."""

    file: str = Field(min_length=1)          # relative to validate.source.dir
    score_file: str | None = None            # rows to score, same columns without the target (optional)
    header: bool = True                      # False: the file has no header row; give `names`
    names: list[str] = []                    # column names in file order (header: false)
    id_column: str | None = None             # the customer key; `none`: the 1-based row number in the file
    row_keys: bool = False                   # set by `id_column: none`: rows are keyed by number on purpose
    target: str = Field(min_length=1)
    # what a positive target means: purchase (bought; the propensity model) or lapse (lapsed, churned,
    # surrendered; the churn model, and tiers rank by retention value). `churn` is read as lapse.
    target_kind: Literal["purchase", "lapse"] = "purchase"
    target_en: str | None = None             # the outcome in words, for descriptions (default from the kind)
    target_zh: str | None = None
    premium_column: str | None = None        # lapse: the premium at risk per row (ranks tiers by p x premium)
    positive: list[str] = Field(min_length=1)  # target values meaning the outcome happened (compared as text)
    negative: list[str] = Field(min_length=1)
    drop: list[str] = []                     # never features: known only after the outcome (leaky)
    personal: list[str] = []                 # personal data (dropped); more is found by name and content
    not_personal: list[str] = []             # taken for personal data by name, but is not (content still checked)
    categorical: list[str] = []              # coded columns that look numeric but are not ordinal
    missing: dict[str, list[str]] = {}       # column -> codes meaning "unknown" (e.g. pdays 999 = never)
    time_order: Literal["file", "none"]      # file: rows are in time order (out-of-time split); none: random
    month_column: str | None = None          # time_order file: month of each row (jan..dec or 1..12), years
    start_year: int | None = Field(default=None, ge=1900, le=2100)  # roll over when the month goes back
    split: SplitShares
    seed: int = Field(default=20261123, ge=0)
    describe: dict[str, str] = {}            # column -> one-line description for the dictionary and reasons
    describe_zh: dict[str, str] = {}         # column -> the same in Chinese (else reasons use a generic phrase)
    labels: dict[str, dict[str, ValueLabel]] = {}  # column -> value -> its words in reasons ({en, zh})
    experiment: ExperimentSpec | None = None  # a randomised experiment: uplift per arm, best arm or none
    other_target: OtherTarget | None = None   # a second flag of the other kind: both models are trained

    @model_validator(mode="before")
    @classmethod
    def _explicit_row_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("id_column", "")).strip().lower() == "none":
            data = {**data, "id_column": None, "row_keys": True}
        if isinstance(data, dict) and str(data.get("target_kind", "")).strip().lower() == "churn":
            data = {**data, "target_kind": "lapse"}
        return data

    @property
    def label_column(self) -> str:
        """The feature table's label column for this target kind."""
        return LABELS[self.target_kind]

    def targets(self) -> list[OtherTarget]:
        """Every target of the file, the primary one (which tiers rank by) first."""
        first = OtherTarget(target=self.target, target_kind=self.target_kind, positive=self.positive,
                            negative=self.negative, target_en=self.target_en, target_zh=self.target_zh)
        return [first] + ([self.other_target] if self.other_target else [])

    def outcome_words(self, kind: str | None = None) -> tuple[str, str]:
        """The outcome of the target of ``kind`` (default: the primary one) in English and Chinese (the spec's
        words, else the kind's)."""
        t = next((t for t in self.targets() if t.target_kind == (kind or self.target_kind)), None)
        if t is None:
            raise ValueError(f"the source has no {kind} target")
        en, zh = OUTCOME_WORDS[t.target_kind]
        return (t.target_en or f"{en} ('{t.target}' is one of {t.positive})", t.target_zh or zh)

    @field_validator("positive", "negative", "names", "drop", "categorical", "personal", "not_personal",
                     mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any) -> Any:
        return _refuse_yaml_booleans(v)

    @model_validator(mode="after")
    def _consistent(self) -> TabularSpec:
        if not self.header and not self.names:
            raise ValueError("header: false needs `names` (the column names in file order)")
        if self.month_column and self.start_year is None:
            raise ValueError("month_column needs start_year (the year of the file's first row)")
        if self.month_column and self.time_order != "file":
            raise ValueError("month_column only makes sense with time_order: file")
        both = set(self.positive) & set(self.negative)
        if both:
            raise ValueError(f"target values {sorted(both)} are listed as both positive and negative")
        if self.target in self.drop:
            raise ValueError(f"the target '{self.target}' cannot also be dropped")
        o = self.other_target
        if o and o.target_kind == self.target_kind:
            raise ValueError(f"other_target must be of the other kind than target_kind ({self.target_kind})")
        if o and o.target in (self.target, *self.drop, self.premium_column):
            raise ValueError(f"other_target '{o.target}' cannot be the target, dropped or the premium column")
        if self.experiment and self.experiment.treatment in (self.target, *self.drop):
            raise ValueError(f"the treatment column '{self.experiment.treatment}' cannot be the target or dropped")
        if self.experiment and self.experiment.control in self.experiment.arms:
            raise ValueError(f"the control value '{self.experiment.control}' is also listed among the arms")
        if self.experiment and self.target_kind != "purchase":
            raise ValueError("an experiment's outcome is a success to buy more of: target_kind must be purchase")
        if self.premium_column and self.target_kind != "lapse":
            raise ValueError("premium_column (the premium at risk) only applies to target_kind: lapse")
        if self.premium_column and self.premium_column in (self.target, *self.drop):
            raise ValueError(f"premium_column '{self.premium_column}' cannot be the target or dropped")
        return self
