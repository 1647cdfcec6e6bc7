"""P1-P4 tiers for a source without a policy archive or contact history (a tabular file), for the segment stage.

There is no contact value, rule segment or history to plan a channel from: tiers rank by the calibrated
probability of the file's primary target (or premium at risk for a lapse target with a premium column), and
a backtest judges them on rows the model did not train on (the test rows, or a cross-fitted file's
out-of-fold scores). A randomised-experiment file adds the best arm per row. Kept apart from the book's
segmentation in pipelines/segment.py, which calls ``propensity_tiers``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from models import calibration
from models import segments as sg
from models import uplift as up
from pipelines import headline, paths, scoring, tracking
from pipelines.errors import InputError, require
from pipelines.io import staged_outputs
from pipelines.params import Params

log = logging.getLogger("pipelines.segment")
FEATURES, TRAIN_REPORT, MODEL_SCORES = paths.FEATURES, paths.report("train"), paths.MODEL_SCORES
REPORT, PLOT, OUT, RUN_FILE = paths.report("segments"), paths.plot("tiers"), paths.SEGMENT_DIR, paths.RUN_FILE


def _ranking(rows: pd.DataFrame, p: np.ndarray, params: Params) -> tuple[np.ndarray, str]:
    """What a tabular source's tiers rank by: the calibrated probability of its target, or for a lapse target
    with a declared premium column the premium at risk (p_lapse x premium: retention value)."""
    tab = params.validate_.source.tabular
    if params.capabilities.target == "lapse" and tab is not None and tab.premium_column:
        return p * rows[tab.premium_column].astype("float64").fillna(0.0).clip(lower=0).to_numpy(), "premium_at_risk"
    return p, f"p_{params.capabilities.target}"


def _held_out(feats: pd.DataFrame, model: scoring.LoadedModel, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows the tier backtest may judge and their calibrated probabilities: the test rows scored by the
    model, or for a cross-fitted file every labelled row with its out-of-fold score (the final model has seen
    them all), calibrated by the model's calibrator."""
    if "fold" not in feats.columns or not feats["fold"].notna().any():
        test = feats[feats["role"] == "test"].reset_index(drop=True)
        return test, model.predict(test)
    require([MODEL_SCORES], "run the train stage first (dvc repro train)")
    oof = pd.read_parquet(MODEL_SCORES, columns=["customer_id", f"score_{target}"]).set_index("customer_id")
    test = feats[feats["fold"].notna()].reset_index(drop=True)
    raw = oof[f"score_{target}"].reindex(test["customer_id"]).to_numpy(float)
    if np.isnan(raw).any():
        raise InputError(f"{MODEL_SCORES} lacks out-of-fold {target} scores for {int(np.isnan(raw).sum())} "
                         "labelled rows: it is from another run (dvc repro train)")
    return test, calibration.apply(model.calibrator or {"method": "identity"}, raw)


def propensity_tiers(params: Params) -> None:
    """A source without an archive or contact history: P1-P4 tiers by the calibrated probability of its target
    (purchase, or lapse: then by premium at risk when the source declares a premium) - there is no contact
    value, no rule segment to align with, no history to plan a channel from - and a backtest of those tiers on
    the test rows. Writes the same files as the full stage, minus the plan."""
    caps = params.capabilities
    require((FEATURES, TRAIN_REPORT), "run the earlier stages first (dvc repro calibrate)")
    target, prob = caps.target, f"p_{caps.target}"
    as_of, sp = params.book.as_of, params.segment
    feats = pd.read_parquet(FEATURES)
    rows = scoring.scoring_rows(feats, as_of, caps).reset_index(drop=True)
    model = scoring.load_model(target)
    test, p_test = _held_out(feats, model, target)
    p = model.predict(rows)
    (rank, ranked_by), (rank_test, _) = _ranking(rows, p, params), _ranking(test, p_test, params)
    log.info("%s: tiers rank by %s; rule segments, contact value and the contact plan do not apply",
             caps.describe(), ranked_by)
    frozen = sp.frozen if sp.cutpoints == "frozen" else None
    cuts = frozen.tiers if frozen else sg.fit_tier_cuts(rank, sp.tiers, sp.capacity.total_weekly)
    seg = pd.DataFrame({"customer_id": rows["customer_id"], "as_of": as_of, prob: p,
                        "priority_tier": sg.tiers(rank, cuts), "split_role": rows["role"].to_numpy()})
    for other in caps.models[1:]:  # a file with both flags: the second probability rides along, untiered
        seg[f"p_{other}"] = scoring.load_model(other).predict(rows)
    if ranked_by == "premium_at_risk":
        seg[ranked_by] = rank
    if caps.experiment:
        seg = pd.concat([seg, best_arms(rows, p, params)], axis=1)
    bt = test[["customer_id", caps.label]].assign(**{prob: p_test}, priority_tier=sg.tiers(
        rank_test, sg.fit_tier_cuts(rank_test, sp.tiers, sp.capacity.total_weekly) if not frozen else cuts))
    table = sg.propensity_backtest(bt, outcome=target)
    rate = f"realised_{target}_rate"
    report: dict[str, Any] = {"as_of": str(as_of), "cutpoints_mode": sp.cutpoints, "ranked_by": ranked_by,
              "target": target,
              "not_applicable": "rule segments, contact value, contact plan (no archive or contact history)",
              "backtest": {"rows": "out of fold" if "fold" in test.columns else "test", "customers": len(bt),
                           f"tiers_monotone_{target}_rate": sg.is_monotone_decreasing(table[rate]),
                           "tiers": {r["priority_tier"]: {k: float(r[k]) for k in (
                               "customers", f"expected_{target}s", f"realised_{target}s", rate)}
                               for r in table.to_dict("records")}},
              "scoring": {"customers": len(seg), "rows": "score" if (feats["role"] == "score").any() else "all",
                          "tiers": seg["priority_tier"].value_counts().reindex(list(sg.TIERS),
                                                                               fill_value=0).to_dict()}}
    if caps.experiment:
        report["scoring"]["best_arm"] = seg["recommended_arm"].fillna("none").value_counts().to_dict()
    log.info("backtest on %s %s rows: tiers monotone in %s rate: %s (%s)", f"{len(bt):,}", report["backtest"]["rows"],
             target,
             report["backtest"][f"tiers_monotone_{target}_rate"],
             ", ".join(f"{r['priority_tier']} {r[rate]:.1%}" for r in table.to_dict("records")))
    with staged_outputs() as out:
        out.parquet(seg, OUT / "segments.parquet")
        out.json({"tiers": list(cuts), "ranked_by": ranked_by, "fitted_on": str(as_of), "mode": sp.cutpoints},
                 OUT / "cutpoints.json")
        table.to_csv(out.path(OUT / "backtest" / "priority_tier.csv"), index=False)
        table.rename(columns={"priority_tier": "tier", rate: f"ml_{target}_rate"})[
            ["tier", f"ml_{target}_rate"]].to_csv(out.path(PLOT), index=False)
        headline.write(out, "segments", report)
    log_run(report)


def best_arms(rows: pd.DataFrame, p_purchase: np.ndarray, params: Params) -> pd.DataFrame:
    """A randomised-experiment source: every arm's uplift and net value per row, and the best arm or none."""
    spec = params.validate_.source.tabular
    models = scoring.load_effect_models()
    if spec is None or spec.experiment is None or models is None:
        raise InputError("an experiment source needs the uplift stage's learner: dvc repro uplift")
    e, model = spec.experiment, models["purchase"]
    arms = list(model.channels)
    out = sg.best_arm(up.effects(model, rows, p_purchase, arms), arms, e.value_per_success, e.arm_cost)
    out.index = rows.index
    log.info("experiment: best arm per customer %s (none: no arm's incremental value beats its cost)",
             out["recommended_arm"].fillna("none").value_counts().to_dict())
    return out


def log_run(report: dict[str, Any]) -> None:
    """The segment metrics and files, added to the train stage's MLflow run."""
    with tracking.run("segment", {"features": FEATURES}, resume=tracking.read_run_id(RUN_FILE)) as mlflow:
        flat = tracking.flatten({"segment": report})
        mlflow.log_metrics({k: float(v) for k, v in flat.items()
                            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)})
        mlflow.log_artifact(str(REPORT), artifact_path="reports")
        mlflow.log_artifact(str(OUT / "cutpoints.json"), artifact_path="segments")
