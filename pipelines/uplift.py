"""Learn the incremental effect of a touch per channel and evaluate it on randomised holdouts (DVC stage ``uplift``).

Treatments are defined point-in-time from the contact history (``features/snapshots/treatments.py``): the first selling
touch in the week after each snapshot, or none. The learners (``models/uplift.py``) fit on the training
snapshots and stop early on the validation snapshot; the evaluation uses only the campaigns of the
calibration and test snapshots' windows (out of time), whose holdouts are random: Qini and uplift in the top
30% per campaign channel for the uplift ranking, the propensity ranking (today's) and random. Writes
``data/uplift/<purchase|lapse>/model.txt`` + ``meta.json``, ``data/reports/uplift.json`` (headline in
``data/metrics/``) and ``data/plots/qini_purchase.csv`` (DVC plot); adds the metrics to the train stage's MLflow run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.intake import tabular
from features.snapshots import treatments as tr
from models import anchoring, transfer
from models import uplift as up
from models.splits import iso_days
from pipelines import headline, interim, paths, scoring, tracking
from pipelines.cli import base_parser, run_stage
from pipelines.errors import InputError, require
from pipelines.io import staged_outputs
from pipelines.params import Params, load_params

log = logging.getLogger("pipelines.uplift")
FEATURES, DICTIONARY, CONTACTS = paths.FEATURES, paths.DICTIONARY, paths.CONTACTS
TRAIN_REPORT, RUN_FILE, OUT = paths.report("train"), paths.RUN_FILE, paths.UPLIFT
REPORT, PLOT = paths.report("uplift"), paths.plot("qini_purchase")
CHANNELS = list(tr.PLANNABLE_CHANNELS)
# each row's calibrated business-as-usual probabilities, predicted once (``_with_baselines``)
BAU = {"purchase": "bau_p_purchase", "lapse": "bau_p_lapse"}


def _labelled(params: Params, split: dict[str, Any]) -> pd.DataFrame:
    """Labelled snapshot rows of every role (train, valid, calib, test, later), every column, with their role.

    Filtered and given the column once: each ``assign``, boolean filter and ``reset_index`` of this frame copied
    all of it (2.4M rows x 140 columns with a 5M book's training sample)."""
    named = {*split["train"], split["valid"], split["calib"], split["test"]}  # the dates given a role below
    wanted = [d for d in scoring.snapshot_dates(FEATURES) if str(d) in named or str(d) > split["valid"]]
    # a book's: every purchase label present; the purge gaps before validation are not read at all (reading them
    # and then filtering copied the whole frame: the stage's peak, 4.1 GiB on the 1M book)
    feats = scoring.read_labelled(FEATURES, params.capabilities, wanted)
    dates = iso_days(feats["snapshot_date"])
    role = pd.Series(None, index=feats.index, dtype=object)
    for name in ("valid", "calib", "test"):
        role[dates == split[name]] = name
    role[dates.isin(split["train"])] = "train"
    role[(dates > split["valid"]) & role.isna()] = "later"  # purged gaps after validation: out of time too
    keep = (role.notna() & feats["purchase_h"].notna()).to_numpy()
    if not keep.all():
        feats = feats[keep]
        feats.index = pd.RangeIndex(len(feats))
    feats["role"] = role.to_numpy()[keep]
    return feats


def _treated(rows: pd.DataFrame, params: Params) -> pd.DataFrame:
    """``rows`` with their treatment, arms and direct-purchase label (on the columns ``_used`` keeps: the
    treatments' merge copies its input)."""
    engine = params.features.engine
    with interim.bounded(engine.memory_limit, engine.threads) as con:
        # only the rows' customers' contacts, taken once into a table: the training sample is capped, the book is
        # not. At 5M customers the treatments' range join over every contact was the stage's peak (8.2 GiB) and
        # a filtered view still joined first (3.3 GiB); the table of 98k customers' contacts: 0.7 GiB, 2x faster
        con.register("sampled", pa.table({"customer_id": pa.array(rows["customer_id"].unique())}))
        con.execute(f"CREATE TEMP TABLE contacts AS SELECT * FROM read_parquet('{CONTACTS.as_posix()}') "
                    "WHERE customer_id IN (SELECT customer_id FROM sampled)")
        u = params.uplift
        snaps = sorted(pd.to_datetime(rows["snapshot_date"]).dt.date.unique())
        found = tr.treatments(con, snaps, u.treatment_window_days, u.experiment_window_days)
        out = tr.assign_treatment(rows, found)
        out["purchase_direct"] = tr.direct_purchase(con, out, params.book.horizon_days).to_numpy()
    return out


def _rows(params: Params, split: dict[str, Any]) -> pd.DataFrame:
    """The learners' and the evaluation's rows: labelled, with their role, calibrated business-as-usual
    probabilities (predicted on every feature), treatment, arms and direct-purchase label, and only the columns
    ``_used`` keeps (the full-width rows are dropped before the treatments are joined)."""
    narrow = _used(_with_baselines(_labelled(params, split)), params)
    return _used(_treated(narrow, params), params)


def _with_baselines(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with their calibrated purchase and lapse probabilities (``BAU``), predicted once.

    The learners' offsets, the anchoring, the lapse transfer and the evaluation all read them; predicting each
    subset again cost about a quarter of the stage. A row's prediction does not depend on the others in
    its batch, so the values are the same.
    """
    pred = scoring.predict_each({model: scoring.load_model(model) for model in BAU}, rows)
    for model, column in BAU.items():
        rows[column] = pred[model]
    return rows


def _used(rows: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Only the columns the learners and the evaluation read: every row filter after this copies about 30
    columns instead of the feature table's 150 (on the default book, 860k rows filtered a dozen times)."""
    u = params.uplift
    keep = ["snapshot_date", "customer_id", "role", "treatment", *(f"arm_{c}" for c in CHANNELS), "purchase_h",
            "lapse_h", "purchase_direct", *BAU.values(), *u.purchase.modifiers, *u.lapse.modifiers]
    return rows[[c for c in dict.fromkeys(keep) if c in rows.columns]]


def _bau(frame: pd.DataFrame, model: str) -> np.ndarray:
    return frame[BAU[model]].to_numpy(float)


def _anchor(purchase: up.EffectModel, campaigns: pd.DataFrame, p_purchase: np.ndarray, params: Params,
            ) -> tuple[up.EffectModel, dict[str, Any]]:
    """The purchase learner with each campaign channel's level anchored to its randomised arms in ``campaigns``
    (direct purchases, the learner's own outcome)."""
    tau = up.effects(purchase, campaigns, p_purchase, CHANNELS)
    found = {}
    for j, c in enumerate(CHANNELS):
        sel = campaigns[f"arm_{c}"].notna().to_numpy()
        if sel.any() and c in purchase.supported:
            found[c] = (campaigns.loc[sel, "purchase_direct"].to_numpy(float),
                        campaigns.loc[sel, f"arm_{c}"].to_numpy(int), tau[sel, j])
    anchors = anchoring.anchor(found, params.uplift.anchor_min_holdout, params.uplift.anchor_prior_sd)
    for a in anchors.values():
        log.info("anchored %s: campaigns %s rows (%s held out), effect %+.4f +- %.4f vs learned %.4f: scale %.2f",
                 a.channel, f"{a.rows:,}", f"{a.holdout:,}", a.ate, a.se, a.predicted, a.scale)
    return (up.with_scale(purchase, {c: a.scale for c, a in anchors.items()}),
            {"prior_sd": params.uplift.anchor_prior_sd, "channels": {c: a.as_dict() for c, a in anchors.items()}})


def _fit(train: pd.DataFrame, valid: pd.DataFrame | None, params: Params, campaigns: pd.DataFrame,
         rounds: dict[str, int] | None = None, evaluated_lapse: up.EffectModel | None = None,
         ) -> tuple[up.EffectModel, up.EffectModel, dict[str, Any]]:
    """Both learners on ``train`` (early stopping on ``valid``; without it, the given ``rounds``); the purchase
    learner's channel levels anchored to the randomised arms in ``campaigns``.

    A refit in the ``transfer`` form keeps ``evaluated_lapse``'s learner and refits only the transfer link: the
    lapse effects are the purchase learner's pattern at the link's level and elasticity, and never read the
    lapse booster (``uplift.effects``), so boosting it again on every snapshot was work for nothing.
    """
    u, g = params.uplift, params.train.gbm
    counts_p, supported_p = up.support(train["treatment"], CHANNELS, u.min_treated)
    log.info("purchase: %s rows; treated per channel %s; estimated for %s", f"{len(train):,}", counts_p, supported_p)
    vp = None if valid is None else _bau(valid, "purchase")
    purchase = up.fit_effects(train, valid, "purchase_direct", (_bau(train, "purchase"), vp), CHANNELS,
                              supported_p, u.purchase, "purchase", g.seed, g.num_threads,
                              None if rounds is None else rounds["purchase"])
    purchase, anchored = _anchor(purchase, campaigns, _bau(campaigns, "purchase"), params)
    holders_t = train[train["lapse_h"].notna()]
    holders_v = None if valid is None else valid[valid["lapse_h"].notna()]
    counts_l, supported_l = up.support(holders_t["treatment"], CHANNELS, u.min_treated)
    log.info("lapse: %s holder rows; treated per channel %s; estimated for %s", f"{len(holders_t):,}", counts_l,
             supported_l)
    kept = evaluated_lapse if u.lapse.form == "transfer" else None
    if kept is not None:
        lapse = kept
        log.info("lapse: the out-of-time learner kept (the transfer form reads only its link, refitted below)")
    else:
        vl = None if holders_v is None else _bau(holders_v, "lapse")
        lapse = up.fit_effects(holders_t, holders_v, "lapse_h", (_bau(holders_t, "lapse"), vl), CHANNELS,
                               supported_l, u.lapse, "lapse", g.seed, g.num_threads,
                               None if rounds is None else rounds["lapse"])
    link = None
    if lapse.form == "transfer":
        link = _transfer_fit(holders_t, purchase, _bau(holders_t, "purchase"), _bau(holders_t, "lapse"))
        lapse = up.with_transfer(lapse, link)
        log.info("lapse effect transferred from purchase: kappa %.3f, elasticity %.2f (%s treated holder rows, %s "
                 "lapses; -log-likelihood %s)", link.kappa, link.elasticity, f"{link.rows:,}", link.lapses,
                 {k: round(v, 2) for k, v in link.nll.items()})
    info = {"treated_rows": {"purchase": counts_p, "lapse": counts_l},
            "supported": {"purchase": supported_p, "lapse": supported_l},
            "training_rows": {"purchase": len(train), "lapse": len(holders_t)},
            "rounds": {"purchase": purchase.meta()["best_iteration"], "lapse": lapse.meta()["best_iteration"]},
            **({"valid_logloss": {m.outcome: _valid_loss(m) for m in (purchase, lapse)}} if valid is not None else {}),
            "relative_effect": {"purchase": purchase.relative_effect, "lapse": lapse.relative_effect},
            "anchoring": anchored, "lapse_form": lapse.form, "lapse_kappa": lapse.kappa,
            **({"lapse_learner": "the out-of-time fit's (transfer form: only the link is refitted)"}
               if kept is not None else {}),
            **({"lapse_transfer": link.as_dict()} if link is not None else {})}
    return purchase, lapse, info


def _valid_loss(model: up.EffectModel) -> float:
    """The learner's log loss on the validation snapshot at its best round (to compare learner settings on)."""
    return float(model.booster.best_score.get("valid", {}).get("binary_logloss", float("nan")))


def _transfer_fit(holders: pd.DataFrame, purchase: up.EffectModel, p_purchase: np.ndarray, p_lapse: np.ndarray,
                  ) -> transfer.TransferFit:
    """The lapse-from-purchase link, fitted on the holders touched through a channel the purchase learner
    estimates (their lapse outcome, churn probability and the relative purchase effect of their channel)."""
    treated = holders["treatment"].isin(purchase.supported).to_numpy()
    rows = holders[treated]
    rel = up.relative(up.effects(purchase, rows, p_purchase[treated], CHANNELS), p_purchase[treated])
    return transfer.fit(rows["lapse_h"].to_numpy(float), p_lapse[treated],
                        up.own_channel(rel, rows["treatment"].tolist(), CHANNELS))


def _check_inputs(rows: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    fit_rows = rows[rows["treatment"].notna()]
    train, valid = fit_rows[fit_rows["role"] == "train"], fit_rows[fit_rows["role"] == "valid"]
    if train.empty or valid.empty:
        raise InputError("no training or validation rows with a treatment: the contact history is too short")
    for name, lp in (("purchase", params.uplift.purchase), ("lapse", params.uplift.lapse)):
        missing = [c for c in lp.modifiers if c not in rows.columns]
        if missing:
            raise InputError(f"uplift.{name}.modifiers names columns the feature table lacks: {missing}")
    return train, valid


def _evaluate(rows: pd.DataFrame, purchase: up.EffectModel, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Qini per campaign channel and pooled on the out-of-time randomised arms: every labelled snapshot after
    the validation one (the learners never saw those months)."""
    held = rows[rows["role"].isin(["later", "calib", "test"])]
    arms = held[[f"arm_{c}" for c in CHANNELS]]
    held = held[arms.notna().any(axis=1)].reset_index(drop=True)
    if held.empty:
        return ({"note": "no campaign arms in the evaluation windows"},
                pd.DataFrame(columns=["share", "uplift", "propensity", "random"]))
    p_bau = _bau(held, "purchase")
    tau = up.effects(purchase, held, p_bau, CHANNELS)
    report: dict[str, Any] = {"rows": len(held), "snapshots": sorted(held["snapshot_date"].astype(str).unique())}
    pooled_t, pooled_tau, pooled_y, pooled_p = [], [], [], []
    for j, c in enumerate(CHANNELS):
        arm = held[f"arm_{c}"]
        sel = arm.notna().to_numpy()
        if sel.sum() == 0 or arm[sel].nunique() < 2:
            continue
        y, t = held.loc[sel, "purchase_h"].to_numpy(float), arm[sel].to_numpy(int)
        if np.unique(y).size < 2:  # no purchase (or nothing but purchases) in the arms: no ranking to judge
            report[c] = {"rows": float(sel.sum()), "note": "every row has the same outcome"}
            continue
        report[c] = up.qini_report(y, t, {"uplift": tau[sel, j], "propensity": p_bau[sel]}, seed)
        pooled_t.append(t)
        pooled_tau.append(tau[sel, j])
        pooled_y.append(y)
        pooled_p.append(p_bau[sel])
    if not pooled_y:
        return report, pd.DataFrame(columns=["share", "uplift", "propensity", "random"])
    y, t = np.concatenate(pooled_y), np.concatenate(pooled_t)
    if np.unique(y).size < 2 or np.unique(t).size < 2:
        report["pooled"] = {"rows": float(len(y)), "note": "every row has the same outcome or arm"}
        return report, pd.DataFrame(columns=["share", "uplift", "propensity", "random"])
    s_u, s_p = np.concatenate(pooled_tau), np.concatenate(pooled_p)
    report["pooled"] = up.qini_report(y, t, {"uplift": s_u, "propensity": s_p}, seed)
    report["pooled"]["uplift_beats_propensity"] = bool(report["pooled"]["qini_uplift"] >
                                                       report["pooled"]["qini_propensity"])
    curve = up.qini_points(y, t, s_u).rename(columns={"qini": "uplift"})
    curve["propensity"] = up.qini_points(y, t, s_p)["qini"].to_numpy()
    curve["random"] = curve["share"] * float(curve["uplift"].iloc[-1])
    return report, curve


def experiment(params: Params) -> None:
    """A tabular source with a randomised experiment: one learner over its arms, evaluated on the test rows."""
    spec = params.validate_.source.tabular
    assert spec is not None and spec.experiment is not None
    e, u, g = spec.experiment, params.uplift, params.train.gbm
    require((FEATURES, DICTIONARY), "run the earlier stages first (dvc repro calibrate)")
    feats = pd.read_parquet(FEATURES)
    rows = feats[feats["purchase_h"].notna() & feats["treatment"].notna()].reset_index(drop=True)
    arms = tabular.arm_names(rows)
    dictionary = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    modifiers = e.modifiers or [d["name"] for d in dictionary if d["role"] == "feature" and d["dtype"] == "float"]
    if not modifiers:
        raise InputError("validate.source.tabular.experiment: no numeric column for the effect to vary with; "
                         "name some in `modifiers`")
    # randomised arms: no confounding to borrow strength against, so each arm's effect varies in its own way
    learner = u.purchase.model_copy(update={"modifiers": modifiers, "form": "learner", "interactions": "full"})
    train, valid, test = (rows[rows["role"] == r] for r in ("train", "valid", "test"))
    counts, supported = up.support(train["treatment"], arms, u.min_treated)
    log.info("experiment %s: arms %s, control '%s'; treated training rows %s; estimated for %s", e.treatment,
             arms, e.control, counts, supported)
    if not supported:
        raise InputError(f"experiment {e.treatment}: no arm has uplift.min_treated ({u.min_treated}) treated "
                         f"training rows ({counts}): lower min_treated or add rows")
    propensity = scoring.load_model("purchase")
    model = up.fit_effects(train, valid, "purchase_h", (propensity.predict(train), propensity.predict(valid)), arms,
                           supported, learner, "purchase", g.seed, g.num_threads)
    tau = up.effects(model, test, propensity.predict(test), arms)
    report: dict[str, Any] = {"experiment": e.treatment, "arms": arms, "control": e.control,
                              "treated_rows": counts, "supported": supported,
                              "relative_effect": model.relative_effect, "holdout_evaluation": {"rows": "test"}}
    p_test = propensity.predict(test)
    curve = pd.DataFrame(columns=["share", "uplift", "propensity", "random"])
    for j, arm in enumerate(arms):
        sel = test["treatment"].isin([arm, "none"]).to_numpy()
        y, t = test.loc[sel, "purchase_h"].to_numpy(float), (test.loc[sel, "treatment"] == arm).to_numpy(int)
        if np.unique(y).size < 2 or np.unique(t).size < 2:
            report["holdout_evaluation"][arm] = {"rows": float(sel.sum()), "note": "one outcome or one arm only"}
            continue
        report["holdout_evaluation"][arm] = up.qini_report(y, t, {"uplift": tau[sel, j], "propensity": p_test[sel]},
                                                           g.seed)
        if curve.empty:
            curve = up.qini_points(y, t, tau[sel, j]).rename(columns={"qini": "uplift"})
            curve["propensity"] = up.qini_points(y, t, p_test[sel])["qini"].to_numpy()
            curve["random"] = curve["share"] * float(curve["uplift"].iloc[-1])
    with staged_outputs() as out:
        model.booster.save_model(str(out.path(OUT / "purchase" / "model.txt")))
        out.json(model.meta(), OUT / "purchase" / "meta.json")
        headline.write(out, "uplift", report)
        curve.to_csv(out.path(PLOT), index=False)
    for arm in arms:
        r = report["holdout_evaluation"].get(arm, {})
        if "qini_uplift" in r:
            log.info("arm %s on the test rows: ATE %+.4f, Qini uplift %.4f vs propensity %.4f vs random %.4f", arm,
                     r["ate"], r["qini_uplift"], r["qini_propensity"], r["qini_random"])


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    caps = params.capabilities
    if caps.experiment:
        experiment(params)
        return
    if not (caps.contact_history and caps.snapshots):
        reason = (f"{caps.describe()}: no contact history to define treatments"
                  + ("; the plan uses the propensity form" if caps.archive else "; tiers rank by the model's own "
                     "probability, and an uplift per arm needs a randomised experiment (tabular.experiment)"))
        log.info("uplift skipped: %s", reason)
        with staged_outputs() as out:  # every declared output exists, saying why it is empty
            headline.write(out, "uplift", {"skipped": reason})
            out.json({"skipped": reason}, OUT / "skipped.json")
            pd.DataFrame(columns=["share", "uplift", "propensity", "random"]).to_csv(out.path(PLOT), index=False)
        return
    tracking.prepare()  # connects beside the work below; a misconfigured store fails before anything is published
    require((FEATURES, DICTIONARY, CONTACTS, TRAIN_REPORT), "run the earlier stages first (dvc repro calibrate)")
    split = json.loads(TRAIN_REPORT.read_text(encoding="utf-8"))["split"]
    rows = _rows(params, split)
    log.info("treatments: %s", rows["treatment"].value_counts(dropna=False).to_dict())
    train, valid = _check_inputs(rows, params)
    has_arm = rows[[f"arm_{c}" for c in CHANNELS]].notna().any(axis=1)
    purchase, lapse, info = _fit(train, valid, params, rows[has_arm & rows["role"].isin(["train", "valid"])])
    evaluation, curve = _evaluate(rows, purchase, params.train.gbm.seed)
    report: dict[str, Any] = {"treatment_window_days": params.uplift.treatment_window_days, "evaluated": info,
                              "holdout_evaluation": evaluation}
    if params.uplift.refit_all_snapshots:  # evaluated out of time above; scored with every labelled month
        everything = rows[rows["treatment"].notna()]
        log.info("refitting on every labelled snapshot (%s rows) with the rounds early stopping chose",
                 f"{len(everything):,}")
        purchase, lapse, report["scoring_models"] = _fit(everything, None, params, rows[has_arm], info["rounds"],
                                                         evaluated_lapse=lapse)
    pooled = evaluation.get("pooled", {})
    if "qini_uplift" in pooled:
        log.info("out-of-time campaign holdouts (%s rows): Qini uplift %.4f vs propensity %.4f vs random %.4f",
                 f"{int(pooled['rows']):,}", pooled["qini_uplift"], pooled["qini_propensity"], pooled["qini_random"])
    tracking.ensure_store()
    with staged_outputs() as out:
        for model in (purchase, lapse):
            model.booster.save_model(str(out.path(OUT / model.outcome / "model.txt")))
            out.json(model.meta(), OUT / model.outcome / "meta.json")
        headline.write(out, "uplift", report)
        curve.to_csv(out.path(PLOT), index=False)
    with tracking.run("uplift", {"features": FEATURES, "contacts": CONTACTS},
                      resume=tracking.read_run_id(RUN_FILE)) as mlflow:
        flat = tracking.flatten({"uplift": evaluation})
        mlflow.log_metrics({k: float(v) for k, v in flat.items()
                            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)})
        mlflow.log_artifact(str(REPORT), artifact_path="reports")


def cli(argv: list[str] | None = None) -> int:
    return run_stage("uplift", main, base_parser("uplift", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
