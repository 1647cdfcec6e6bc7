"""Compare calibrated probabilities with the synthetic book's true probabilities (DVC stage ``truth_check``).

The only stage that reads ``data/synthetic/truth.parquet``. It scores the as-of snapshot with the
trained models and calibrators and reports, for purchase and lapse: the calibration error against the
truth, the rank correlation with it, and the AUC the model can expect vs the AUC the true
probabilities can expect (both over outcomes drawn from the truth; the latter is the ceiling).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd

from models import allocation, plan_eval
from models import uplift as up
from models.metrics import calibration_error_vs_truth, expected_auc, spearman
from models.segments import incremental_value
from pipelines import headline, paths, scoring, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, require
from pipelines.io import staged_outputs
from pipelines.params import load_params
from pipelines.stage_needs import skip_reason

log = logging.getLogger("pipelines.truth_check")
TRUTH, FEATURES, MODELS, CALIBRATORS = paths.TRUTH, paths.FEATURES, paths.MODELS, paths.CALIBRATORS
SEGMENTS, BASELINES = paths.SEGMENTS, paths.BASELINE_PLANS
REPORT, PLOT = paths.report("truth_check"), paths.plot("uplift_deciles_purchase")
CHANNELS = ("phone", "sms", "wechat", "email", "letter", "visit", "event")


def score_snapshot(df: pd.DataFrame, model: str) -> np.ndarray:
    """Calibrated probabilities for ``df`` from the saved LightGBM model and calibrator."""
    return scoring.load_model(model, MODELS, CALIBRATORS).predict(df)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    reason = skip_reason("truth_check", params.capabilities)
    if reason:
        log.info("truth_check skipped: %s", reason)
        with staged_outputs() as out:
            headline.write(out, "truth_check", {"skipped": reason})
            pd.DataFrame({"decile": []}).to_csv(out.path(PLOT), index=False)
        return
    tracking.prepare()  # connects beside the work below; a misconfigured store fails before anything is published
    require((TRUTH, FEATURES), "this check needs the synthetic book (dvc repro generate features)")
    for model in ("purchase", "lapse"):
        require((MODELS / model / "model.txt", MODELS / model / "meta.json", CALIBRATORS / f"{model}.json"),
                "run the train and calibrate stages first (dvc repro calibrate)")
    as_of = pd.Timestamp(params.book.as_of)
    snapshot = scoring.read_snapshots(FEATURES, [as_of.date()])
    truth = pd.read_parquet(TRUTH)
    joined = snapshot.merge(truth, on="customer_id", how="inner", suffixes=("", "_truth"))
    log.info("scoring snapshot %s: %s customers, %s with truth", as_of.date(), f"{len(snapshot):,}",
             f"{len(joined):,}")
    report: dict[str, Any] = {"as_of": str(as_of.date()), "customers": len(joined)}
    for model, truth_col in (("purchase", "p_purchase"), ("lapse", "p_lapse")):
        rows = joined[joined[truth_col].notna()]
        p_model = score_snapshot(rows, model)
        p_true = rows[truth_col].to_numpy(float)
        report[model] = {
            "mean_predicted": float(p_model.mean()), "mean_true": float(p_true.mean()),
            "ece_vs_truth": calibration_error_vs_truth(p_true, p_model),
            "spearman_vs_truth": spearman(p_model, p_true),
            "expected_auc_model": expected_auc(p_true, p_model),
            "expected_auc_truth": expected_auc(p_true, p_true),
        }
        r = report[model]
        log.info("%s: mean predicted %.4f vs true %.4f; ECE vs truth %.4f; Spearman %.3f; expected AUC %.4f "
                 "(truth %.4f)", model, r["mean_predicted"], r["mean_true"], r["ece_vs_truth"],
                 r["spearman_vs_truth"], r["expected_auc_model"], r["expected_auc_truth"])
    deciles = pd.DataFrame()
    if SEGMENTS.is_file() and BASELINES.is_file():
        report["plan"], report["uplift"], deciles = plan_check(truth, params)
    tracking.ensure_store()
    with staged_outputs() as out:
        headline.write(out, "truth_check", report)
        deciles.to_csv(out.path(PLOT), index=False)
    with tracking.run("truth_check", {"truth": TRUTH, "features": FEATURES},
                      resume=tracking.read_run_id(paths.RUN_FILE)) as mlflow:
        mlflow.log_metrics({f"{model}.truth.{k}": v for model in ("purchase", "lapse")  # one batch
                            for k, v in report[model].items()})
        flat = tracking.flatten({k: report[k] for k in ("plan", "uplift") if k in report})
        mlflow.log_metrics({f"truth.{k}": float(v) for k, v in flat.items()
                            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)})


def plan_check(truth: pd.DataFrame, params: Any) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Week one's true incremental value (plan, rule playbook, propensity ranking, random) as a share of the
    oracle's, and the predicted effects against the true ones."""
    seg = pd.read_parquet(SEGMENTS)
    need = ["value_sale_unit", "value_lapse_unit", "agent_index", "channel", "next_contact_date",
            *(f"{k}_{c}" for k in ("allowed", "tau_purchase", "tau_lapse") for c in CHANNELS)]
    missing = [c for c in need if c not in seg.columns]
    if missing:
        raise InputError(f"{SEGMENTS} lacks {missing[:4]}{'...' if len(missing) > 4 else ''}: it was written by an "
                         "older segment stage; re-run it (dvc repro segment)")
    seg = seg.merge(pd.read_parquet(BASELINES), on="customer_id", how="left", validate="one_to_one")
    rows = seg.merge(truth, on="customer_id", how="inner", suffixes=("", "_truth"))
    sp = params.segment
    tp, tl = plan_eval.true_effects(rows, CHANNELS)
    cost = np.array([sp.value.channel_cost.get(c, 0.0) for c in CHANNELS])
    true_value = incremental_value(tp, tl, rows["value_sale_unit"].to_numpy(), rows["value_lapse_unit"].to_numpy(),
                                   cost)
    allowed = rows[[f"allowed_{c}" for c in CHANNELS]].to_numpy(bool)
    as_of = pd.Timestamp(params.book.as_of)
    week1 = pd.to_datetime(rows["next_contact_date"]) < as_of + pd.Timedelta(days=7)
    agent = rows["agent_index"].to_numpy(np.int64) if (rows["agent_index"] >= 0).any() else None
    problem = allocation.Problem(np.zeros_like(true_value), CHANNELS, sp.capacity.weekly(), agent,
                                 {c: int(n) for c, n in sp.capacity.per_agent_per_week.items()} if agent is not None
                                 else {})
    plans = {"plan": plan_eval.choice_vector(rows["channel"].where(week1), CHANNELS),
             "rule_playbook": plan_eval.choice_vector(rows["rule_channel"], CHANNELS),
             "propensity": plan_eval.choice_vector(rows["propensity_channel"], CHANNELS)}
    plan: dict[str, Any] = dict(plan_eval.shares(true_value, allowed, plans, problem, seed=params.generate.seed))
    weekly = sp.capacity.weekly()
    plan["plan"]["over_capacity"] = bool(any(int((plans["plan"] == CHANNELS.index(c)).sum()) > k
                                             for c, k in weekly.items()))
    plan["plan_beats_baselines"] = bool(plan["plan"]["true_value"] > max(plan["rule_playbook"]["true_value"],
                                                                         plan["propensity"]["true_value"]))
    pred_p = rows[[f"tau_purchase_{c}" for c in CHANNELS]].to_numpy(float)
    pred_l = rows[[f"tau_lapse_{c}" for c in CHANNELS]].to_numpy(float)
    holders = rows["holds_in_force"].to_numpy(bool)
    uplift = {"purchase": plan_eval.effect_accuracy(pred_p, tp, CHANNELS),
              "lapse": plan_eval.effect_accuracy(pred_l[holders], tl[holders], CHANNELS)}
    deciles = pd.DataFrame({"decile": range(1, 11)})
    for j, c in enumerate(CHANNELS):  # wide: one predicted and one true column per channel (DVC plots)
        cal = up.decile_calibration(pred_p[:, j], tp[:, j]) if np.std(pred_p[:, j]) > 0 else None
        deciles[f"{c}_predicted"] = cal["predicted"].to_numpy() if cal is not None else np.nan
        deciles[f"{c}_true"] = cal["true"].to_numpy() if cal is not None else np.nan
    log.info("week one's true incremental value as a share of the oracle's: plan %.1f%%, rule playbook %.1f%%, "
             "propensity %.1f%%, random %.1f%%", *(100 * plan[k]["share_of_oracle"] for k in (
                 "plan", "rule_playbook", "propensity", "random")))
    return plan, uplift, deciles


def cli(argv: list[str] | None = None) -> int:
    return run_stage("truth_check", main, base_parser("truth_check", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
