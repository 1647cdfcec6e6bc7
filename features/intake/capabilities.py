"""What a source can support, declared once, so stages skip or narrow themselves by one rule.

The synthetic book has everything; a user's own four tables have everything but the simulation's truth; a
tabular source (one file whose columns are the features) has no archive of policies and premiums and no
contact history, so only the model of its own target applies (purchase, or lapse for a churn flag; both when the
file has both flags), tiers rank by the primary target's calibrated probability, and the contact plan,
rule segments and value model do not exist.
Stages read ``models`` / the flags (parts of a stage), or ask ``pipelines.stage_needs.skip_reason`` (a whole
stage: the stage names live with the stages); nothing else in the code tests which source it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ALL_MODELS = ("purchase", "lapse", "value")
LABELS = {"purchase": "purchase_h", "lapse": "lapse_h"}  # a target kind's label column in the feature table
TARGETS = {**LABELS, "value": "premium_h"}  # every model's target column (value: premium given a purchase)


@dataclass(frozen=True)
class Capabilities:
    source: Literal["synthetic", "tables", "tabular"]
    synthetic_truth: bool   # the simulator's true probabilities exist (generate, truth_check)
    archive: bool           # policies and premiums: lapse and value models, rule segments, contact value
    contact_history: bool   # dated contacts: the contact plan, frequency caps, recency segments
    snapshots: bool         # point-in-time monthly snapshots (else: the source's own rows and split)
    experiment: bool = False  # a randomised experiment (treatment arms and a control group) in a tabular file
    target: Literal["purchase", "lapse"] = "purchase"  # a tabular source's target kind (books have both)
    other_target: Literal["purchase", "lapse"] | None = None  # a tabular file with both flags: the second one

    @property
    def models(self) -> tuple[str, ...]:
        if self.archive:
            return ALL_MODELS
        return (self.target, self.other_target) if self.other_target else (self.target,)

    @property
    def label(self) -> str:
        """The label column of the source's own (primary) target (a book's: purchase)."""
        return LABELS[self.target]

    def has(self, need: str) -> bool:
        """A capability flag, ``model:<name>`` (that model is trained) or ``own_split`` (rows carry the source's
        own train/valid/calib/test split instead of snapshots)."""
        if need.startswith("model:"):
            return need.removeprefix("model:") in self.models
        if need == "own_split":
            return not self.snapshots
        return bool(getattr(self, need))

    def describe(self) -> str:
        has = [k for k in ("synthetic_truth", "archive", "contact_history", "snapshots", "experiment")
               if getattr(self, k)]
        return (f"{self.source} source (has: {', '.join(has) or 'a feature table only'}; "
                f"models: {', '.join(self.models)})")


def for_source(kind: Literal["tables", "tabular"], synthetic: bool, experiment: bool = False,
               target: Literal["purchase", "lapse"] = "purchase",
               other_target: Literal["purchase", "lapse"] | None = None) -> Capabilities:
    if kind == "tabular":
        return Capabilities("tabular", synthetic_truth=False, archive=False, contact_history=False, snapshots=False,
                            experiment=experiment, target=target, other_target=other_target)
    return Capabilities("synthetic" if synthetic else "tables", synthetic_truth=synthetic, archive=True,
                        contact_history=True, snapshots=True)

