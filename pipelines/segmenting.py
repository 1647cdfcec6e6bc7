"""Segments, tiers, the week's plan and the tier backtest at one as-of date, from the model files it is given.

Shared wiring (reads the feature table, customers and contacts; calls ``models``): the segment stage runs it with
the pipeline's own models, and retraining with a kept champion's registered ones.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.intake.keys import positions
from features.snapshots.treatments import PLANNABLE_CHANNELS
from models import backtest as bk
from models import baselines, contact_plan, weekly_plan
from models import segments as sg
from models import uplift as up
from pipelines import interim, paths, scoring, spark_score
from pipelines.errors import InputError, require
from pipelines.params import Params

log = logging.getLogger("pipelines.segment")
FEATURES, CUSTOMERS, CONTACTS = paths.FEATURES, paths.CUSTOMERS, paths.CONTACTS
TRAIN_REPORT, REPORT, PLOT = paths.report("train"), paths.report("segments"), paths.plot("tiers")
OUT, BASELINES, RUN_FILE = paths.SEGMENT_DIR, paths.BASELINE_PLANS, paths.RUN_FILE
CHANNELS = tuple(PLANNABLE_CHANNELS)
# what planning reads of the as-of snapshot once it is scored (the rest, 5 GB at 5M customers, is let go)
PLAN_INPUTS = ("customer_id", "opted_out", "days_since_last_complaint", "open_quote", "days_since_last_quote",
               *contact_plan.CONSENT_BLOCKS)
# the as-of snapshot's columns kept once a chunk is scored: planning's and the rule segments'
KEEP = tuple(dict.fromkeys((*PLAN_INPUTS, *sg.RULE_INPUTS)))
# rows of the as-of snapshot scored at a time (scoring.snapshot_chunks): 250,000 x 136 columns is about 0.3 GB
SCORE_CHUNK_ROWS = 250_000


def _consent(frame: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a snapshot just read, owned by the caller) with each customer's consent flags added as columns,
    False where the archive has none. Added in place: a join copied the whole snapshot (5M x 136 at 5M)."""
    at = positions(frame["customer_id"], customers["customer_id"])  # validated: one row per id
    found = at >= 0
    for f in contact_plan.CONSENT_BLOCKS:
        flag = np.zeros(len(frame), bool)
        flag[found] = customers[f].astype("boolean").fillna(False).to_numpy(bool)[at[found]]
        frame[f] = flag
    return frame


def _quoting(frame: pd.DataFrame, params: Params) -> np.ndarray:
    qf = params.segment.plan.quote_followup
    days = np.nan_to_num(frame["days_since_last_quote"].astype("float64").to_numpy(), nan=np.inf)
    return frame["open_quote"].fillna(False).astype(bool).to_numpy() | (days <= qf.active_days)


@dataclass
class RowScores:
    """What each row of a snapshot gets on its own (scores, rule inputs, every channel's effect): computed a chunk
    of the snapshot at a time, so its 136 columns are never all held at once (6 GB at 5M customers)."""

    rows: pd.DataFrame    # the snapshot's columns the rest of segment reads (KEEP), indexed from 0
    scores: pd.DataFrame  # p_purchase, p_lapse, expected_premium
    tau_p: np.ndarray     # (rows x CHANNELS) purchase effect of a touch
    tau_l: np.ndarray     # (rows x CHANNELS) lapse effect of a touch
    form: str             # how the effects were formed (uplift learners, the propensity fallback)


def score_rows(chunks: Iterable[pd.DataFrame], customers: pd.DataFrame, params: Params,
               model_set: tuple[Path, Path], what: str) -> RowScores:
    """``RowScores`` of a snapshot's rows given in ``chunks`` (each indexed from 0): a row's scores and effects do
    not depend on its chunk, so the result is the whole snapshot's, chunk after chunk."""
    spark = params.features.engine.kind == "spark"  # the scores of a Spark run come from Spark (docs/spark.md)
    loaded = None if spark else {name: scoring.load_model(name, *model_set) for name in scoring.SCORED}
    effect_models = scoring.load_effect_models()
    parts: list[tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]] = []
    form = ""
    shifts: dict[str, dict[str, float]] = {"purchase": {}, "lapse": {}}  # the learners' channel constants, once
    for chunk in chunks:
        frame = _consent(chunk, customers)
        scores = (spark_score.score_pandas(frame, params.features.engine.spark, *model_set) if loaded is None
                  else scoring.score_with(loaded, frame))
        tau_p, tau_l, form = effects(frame, scores, params, effect_models, shifts)
        parts.append((frame[list(KEEP)], scores, tau_p, tau_l))
        del frame, chunk
    if not parts:
        raise InputError(f"{FEATURES} has no rows for {what}: re-run the features and train stages")
    rows, scores, taus_p, taus_l = zip(*parts, strict=True)
    return RowScores(pd.concat(rows, ignore_index=True), pd.concat(scores, ignore_index=True),
                     np.concatenate(taus_p), np.concatenate(taus_l), form)


def segment_snapshot(rs: RowScores, params: Params, cuts: sg.CutPoints | None) -> tuple[pd.DataFrame, sg.CutPoints]:
    """Rule and ML segments, contact value and tiers of one snapshot's scored rows (the cut-points are the
    whole snapshot's: fitted on it, or the frozen ones)."""
    sp = params.segment
    frame = rs.rows
    quoting = _quoting(frame, params)

    def cost_for(ml_quadrants: np.ndarray) -> np.ndarray:
        return sg.cheapest_permitted_cost(frame, ml_quadrants, {q: c.channels for q, c in sp.plan.cadence.items()},
                                         sp.plan.quote_followup.channels, quoting, contact_plan.CONSENT_BLOCKS,
                                         sp.value.channel_cost)

    out, fitted = sg.assign(frame, rs.scores, params.rules.quadrant, params.rules, sp.value,
                            sp.tiers, cost_for, cuts, weekly_capacity=sp.capacity.total_weekly)
    return _retier(frame, out, fitted, rs.tau_p, rs.tau_l, rs.form, params, cuts)


def effects(frame: pd.DataFrame, scored: pd.DataFrame, params: Params, models: dict[str, Any] | None,
            shifts: dict[str, dict[str, float]] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """tau per customer and channel for purchase and lapse: the uplift learners' where they support the channel,
    the propensity form (the documented fallback) for channels without enough treated rows or without history.
    ``shifts``: one dict for every chunk of a snapshot (``uplift.effects``)."""
    holder = frame["n_inforce"].fillna(0).to_numpy(float) > 0
    p_purchase, p_lapse = scored["p_purchase"].to_numpy(), scored["p_lapse"].to_numpy()
    fp, fl = sg.propensity_effects(p_purchase, p_lapse, list(CHANNELS), params.segment.value)
    if models is None:
        return fp, fl, "propensity"
    shifts = {"purchase": {}, "lapse": {}} if shifts is None else shifts
    tp = up.effects(models["purchase"], frame, p_purchase, CHANNELS, shifts=shifts["purchase"])
    tl = up.effects(models["lapse"], frame, p_lapse, CHANNELS, up.relative(tp, p_purchase), shifts["lapse"])
    learned = np.array([c in models["purchase"].supported for c in CHANNELS])
    tp, tl = np.where(learned[None, :], tp, fp), np.where(learned[None, :], tl, fl)
    u = params.uplift  # shrink towards the configured prior (docs/segments.md: why, and what it was measured at)
    tp = (1 - u.purchase.prior_weight) * tp + u.purchase.prior_weight * fp
    tl = (1 - u.lapse.prior_weight) * tl + u.lapse.prior_weight * fl
    form = "uplift" if learned.all() else ("propensity" if not learned.any() else
                                           "uplift; propensity for " + ", ".join(np.array(CHANNELS)[~learned]))
    form += f" (prior weight: purchase {u.purchase.prior_weight:g}, lapse {u.lapse.prior_weight:g})"
    return tp, np.where(holder[:, None], tl, 0.0), form


def _retier(frame: pd.DataFrame, out: pd.DataFrame, fitted: sg.CutPoints, tau_p: np.ndarray, tau_l: np.ndarray,
            form: str, params: Params, cuts: sg.CutPoints | None) -> tuple[pd.DataFrame, sg.CutPoints]:
    """Every channel's effect and net value on the rows; tiers cut on the best channel's incremental value."""
    sp = params.segment
    value_sale = out["expected_premium"].to_numpy(float) * sp.value.margin_rate
    value_lapse = frame["premium_inforce"].fillna(0).to_numpy(float) * sp.value.lapse_loss_rate
    cost = np.array([sp.value.channel_cost.get(c, 0.0) for c in CHANNELS])
    value = sg.incremental_value(tau_p, tau_l, value_sale, value_lapse, cost)
    res = out  # sg.assign's frame, ours alone: the columns are added to it, not to a copy (2 GB at 5M customers)
    res["value_sale_unit"], res["value_lapse_unit"], res["effect_form"] = value_sale, value_lapse, form
    for j, c in enumerate(CHANNELS):
        res[f"tau_purchase_{c}"], res[f"tau_lapse_{c}"], res[f"value_{c}"] = tau_p[:, j], tau_l[:, j], value[:, j]
    res["priority_value"] = value.max(axis=1)
    tier_cuts = cuts.tiers if cuts else sg.fit_tier_cuts(res["priority_value"].to_numpy(), sp.tiers,
                                                         sp.capacity.total_weekly)
    res["priority_tier"] = sg.tiers(res["priority_value"].to_numpy(), tier_cuts)
    return res, fitted.model_copy(update={"tiers": tuple(tier_cuts)})


def _recent_contacts(as_of: pd.Timestamp, days: int, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outbound touches (not campaign holdouts) of the last ``days`` days, and each customer's last one."""
    src = f"read_parquet('{CONTACTS.as_posix()}')"
    where = "direction = 'outbound' AND NOT holdout AND contact_ts < CAST(? AS TIMESTAMP)"
    engine = params.features.engine
    with interim.bounded(engine.memory_limit, engine.threads) as con:
        recent = con.execute(f"SELECT customer_id, channel, CAST(contact_ts AS DATE) AS date FROM {src} WHERE "
                             f"{where} AND contact_ts >= CAST(? AS TIMESTAMP)",
                             [as_of.to_pydatetime(), (as_of - pd.Timedelta(days=days)).to_pydatetime()]).df()
        last = con.execute(f"SELECT customer_id, MAX(CAST(contact_ts AS DATE)) AS last_outbound_date FROM {src} "
                           f"WHERE {where} GROUP BY customer_id", [as_of.to_pydatetime()]).df()
    return recent, last


def _agents(customer_ids: pd.Series, params: Params) -> np.ndarray | None:
    """Agent index per customer (-1 without one) when the plan caps agents and the archive names them."""
    if not params.segment.plan.per_agent:
        return None
    if "agent_id" not in pq.read_schema(CUSTOMERS).names:
        return None
    agents = pd.read_parquet(CUSTOMERS, columns=["customer_id", "agent_id"])  # validated: one row per id
    at = positions(customer_ids, agents["customer_id"])
    found = at >= 0
    agent = np.full(len(at), None, dtype=object)
    agent[found] = agents["agent_id"].to_numpy(dtype=object)[at[found]]
    codes, _ = pd.factorize(agent, use_na_sentinel=True)
    return codes.astype(np.int64)


def _agent_caps(params: Params) -> dict[str, int]:
    return {c: int(n) for c, n in params.segment.capacity.per_agent_per_week.items()}


def _plan_columns(scored: pd.DataFrame, plan_in: pd.DataFrame, inputs: weekly_plan.PlanInputs,
                  touches: pd.DataFrame, as_of: pd.Timestamp, params: Params) -> pd.DataFrame:
    """Per customer: the first planned touch and its reason in words, or why there is none."""
    sp = params.segment
    first = weekly_plan.first_touches(touches, len(scored))
    reason = contact_plan.suppression(plan_in.reset_index(drop=True), sp.plan).to_numpy()
    reason = np.where((reason == "") & ~inputs.allowed.any(axis=1), "no_permitted_channel", reason)
    planned = first["channel"].notna().to_numpy()
    days = first["day"].to_numpy()
    # the plan's few distinct days, each turned into a date once (a Timedelta a row was 5 s at 1M customers)
    unique_days, which = np.unique(days[planned].astype(np.int64), return_inverse=True)
    next_date = np.full(len(days), None, dtype=object)
    next_date[planned] = np.array([(as_of + pd.Timedelta(days=int(d))).date() for d in unique_days], object)[which]
    out = pd.DataFrame({"channel": first["channel"].to_numpy(),
                        "next_contact_date": next_date,
                        "touches_planned": first["touches_planned"].to_numpy(int),
                        "suppressed": reason != "", "suppress_reason": reason})
    j = pd.Index(CHANNELS).get_indexer(first["channel"].fillna(CHANNELS[0]))
    tp, tl = _at(scored, "tau_purchase_", j), _at(scored, "tau_lapse_", j)
    out["channel_tau_purchase"] = np.where(planned, tp, np.nan)
    out["channel_tau_lapse"] = np.where(planned, tl, np.nan)
    cost = first["channel"].map(sp.value.channel_cost).astype(float).to_numpy()
    pays = np.where(inputs.allowed, inputs.value, -np.inf).max(axis=1) > 0
    # the two idle reasons chosen per row, not spread into a fixed-width text array (348 bytes a row: 1.7 GB at 5M)
    no_pay = "no touch pays: every permitted channel costs more than it is expected to bring"
    unreached = f"not reached within capacity in the {sp.plan.weeks} planned weeks"
    out["plan_reason"] = [
        weekly_plan.plan_reason(c, a, vs, b, vl, k) if ok else ("" if sup else unreached if r else no_pay)
        for c, a, vs, b, vl, k, ok, r, sup in zip(first["channel"], tp, scored["value_sale_unit"], tl,
                                                  scored["value_lapse_unit"], cost, planned, pays,
                                                  out["suppressed"], strict=True)]
    return out


def _at(scored: pd.DataFrame, prefix: str, j: np.ndarray) -> np.ndarray:
    """Per row, the ``<prefix><channel>`` column of channel index ``j`` (the per-channel columns of _retier)."""
    return scored[[f"{prefix}{c}" for c in CHANNELS]].to_numpy()[np.arange(len(scored)), j]


def _chosen_value(scored: pd.DataFrame, plan: pd.DataFrame, inputs: weekly_plan.PlanInputs) -> pd.DataFrame:
    """Contact value = the planned channel's incremental value net of its cost (unplanned: the best permitted
    channel's, which is what a touch would bring), split into sale, retention and cost."""
    res = scored  # the caller's frame, replaced by the result: no copy of it (about 3 GB at 5M customers)
    best = np.argmax(np.where(inputs.allowed, inputs.value, -np.inf), axis=1)
    j = np.where(plan["channel"].notna(), pd.Index(CHANNELS).get_indexer(plan["channel"].fillna(CHANNELS[0])), best)
    res["value_sale"] = _at(res, "tau_purchase_", j) * res["value_sale_unit"].to_numpy()
    res["value_retention"] = -_at(res, "tau_lapse_", j) * res["value_lapse_unit"].to_numpy()
    res["contact_value"] = _at(res, "value_", j)
    res["contact_cost"] = res["value_sale"] + res["value_retention"] - res["contact_value"]
    return res


def _rule_week_one(rule: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """The rule playbook's channel per customer in its plan's first week (None: no touch that week)."""
    week1 = pd.to_datetime(rule["next_contact_date"]) < as_of + pd.Timedelta(days=7)
    return rule["channel"].where(week1 & ~rule["suppressed"]).to_numpy()


def _baseline_plans(scoring_rows: pd.DataFrame, scored: pd.DataFrame, inputs: weekly_plan.PlanInputs,
                    rule_channel: np.ndarray, params: Params) -> pd.DataFrame:
    """Week one of the plans the product replaces, for evaluation: the rule playbook's (cadence channels, capacity
    filled in priority order; ``_rule_week_one``) and a propensity-ranked one (the same optimiser on the
    propensity form)."""
    sp = params.segment
    tp, tl = sg.propensity_effects(scored["p_purchase"].to_numpy(), scored["p_lapse"].to_numpy(), list(CHANNELS),
                                   sp.value)
    cost = np.array([sp.value.channel_cost.get(c, 0.0) for c in CHANNELS])
    value = sg.incremental_value(tp, tl, scored["value_sale_unit"].to_numpy(), scored["value_lapse_unit"].to_numpy(),
                                 cost)
    del tp, tl  # (customers x channels) each: not held through the plan
    prop_inputs = weekly_plan.PlanInputs(**{**inputs.__dict__, "value": value})
    touches = weekly_plan.plan_weeks(prop_inputs, 1, sp.capacity.weekly(), _agent_caps(params), sp.plan.caps,
                                     sp.plan.solver)
    first = weekly_plan.first_touches(touches, len(scored))
    return pd.DataFrame({"customer_id": scoring_rows["customer_id"].to_numpy(),
                         "rule_channel": rule_channel,
                         "propensity_channel": first["channel"].to_numpy()})


def build(params: Params, model_set: tuple[Path, Path] = (scoring.MODELS, scoring.CALIBRATORS),
          ) -> dict[str, Any]:
    """Segments, tiers, plan and backtest at the as-of date with the given model files (models, calibrators
    folders): the pipeline's own, or a registered champion's (retraining scores with it when it is kept)."""
    require((FEATURES, CUSTOMERS, CONTACTS, TRAIN_REPORT), "run the earlier stages first (dvc repro calibrate)")
    as_of = pd.Timestamp(params.book.as_of)
    test_date = pd.Timestamp(json.loads(TRAIN_REPORT.read_text(encoding="utf-8"))["split"]["test"])
    customers = pd.read_parquet(CUSTOMERS, columns=["customer_id", *contact_plan.CONSENT_BLOCKS])
    sp = params.segment
    frozen = sp.frozen if sp.cutpoints == "frozen" else None
    chunk_rows = SCORE_CHUNK_ROWS if params.features.engine.kind != "spark" else sys.maxsize  # Spark: one job
    row_scores = score_rows(scoring.snapshot_chunks(FEATURES, as_of.date(), chunk_rows), customers, params,
                            model_set, f"the as-of date {as_of.date()}")
    scored, cuts = segment_snapshot(row_scores, params, frozen)
    scoring_rows = row_scores.rows[list(PLAN_INPUTS)]
    del row_scores
    log.info("scored %s customers at %s; cut-points %s (%s)", f"{len(scored):,}", as_of.date(), cuts.model_dump(),
             sp.cutpoints)
    # plan the next touch
    recent, last = _recent_contacts(as_of, max(contact_plan.CAP_WINDOWS_DAYS) + 1, params)
    plan_in = pd.concat([scoring_rows, scored[["ml_quadrant", "priority_tier"]]], axis=1)
    plan_in = plan_in.merge(last, on="customer_id", how="left")
    rule = contact_plan.schedule_capacity(contact_plan.plan(plan_in, recent, as_of.date(), sp.plan),
                                          scored["priority_value"].to_numpy(), as_of.date(), sp.capacity.weekly())
    rule_channel = _rule_week_one(rule, as_of)  # all the evaluation needs of the rule plan: the rest let go
    del rule
    agent = _agents(scoring_rows["customer_id"], params)
    value = scored[[f"value_{c}" for c in CHANNELS]].to_numpy(float)
    inputs = weekly_plan.build_inputs(plan_in, value, CHANNELS, recent, as_of.date(), sp.plan, sp.plan.weeks, agent)
    touches = weekly_plan.plan_weeks(inputs, sp.plan.weeks, sp.capacity.weekly(), _agent_caps(params),
                                     sp.plan.caps, sp.plan.solver)
    plan = _plan_columns(scored, plan_in, inputs, touches, as_of, params)
    del plan_in, touches  # done with: let go before the baselines' plan, whose arrays peak the stage
    for j, c in enumerate(CHANNELS):  # week one's constraints, so evaluation can solve the same problem
        plan[f"allowed_{c}"] = weekly_plan.feasible(inputs, 0, inputs.last_touch, np.zeros_like(value, np.int32),
                                                    sp.plan.caps)[:, j]
    scored = _chosen_value(scored, plan, inputs)
    seg = pd.concat([scoring_rows[["customer_id"]].assign(as_of=as_of.date()), scored, plan], axis=1)
    seg["agent_index"] = agent if agent is not None else -1
    baselines_plan = _baseline_plans(scoring_rows, scored, inputs, rule_channel, params)
    # backtest on the latest matured snapshot, cut-points fitted there the same label-free way
    bt_rows = scoring.read_snapshots(FEATURES, [test_date.date()])  # a sample of the book (the training cap)
    bt_scored, _ = segment_snapshot(score_rows([bt_rows] if len(bt_rows) else [], customers, params, model_set,
                                               f"the test snapshot {test_date.date()}"), params, frozen)
    bt = pd.concat([bt_rows[["customer_id", "snapshot_date", "purchase_h", "lapse_h", "premium_h"]],
                    bt_scored], axis=1)
    bt["premium_h"] = bt["premium_h"].fillna(0.0)
    rule_score = baselines.rule_purchase_score(bt_rows, params.rules.quadrant)
    bt["rule_tier"] = sg.rule_tiers(rule_score, bt["priority_tier"].to_numpy())
    bt_report, tables = bk.tier_backtest(bt, rule_score)
    volume = bk.plan_volume(seg, as_of, sp.capacity.weekly())
    report = {"as_of": str(as_of.date()), "cutpoints_mode": sp.cutpoints, "backtest": bt_report,
              "scoring": {
                  "customers": len(seg),
                  "tiers": seg["priority_tier"].value_counts().reindex(list(sg.TIERS), fill_value=0).to_dict(),
                  "ml_quadrant": seg["ml_quadrant"].value_counts().reindex(list(sg.QUADRANTS), fill_value=0).to_dict(),
                  "rule_quadrant": seg["rule_quadrant"].value_counts().reindex(list(sg.QUADRANTS),
                                                                               fill_value=0).to_dict(),
                  "suppressed": int(seg["suppressed"].sum()),
                  "suppress_reasons": seg.loc[seg["suppressed"], "suppress_reason"].value_counts().to_dict(),
                  "channels": seg["channel"].value_counts().to_dict(),
                  "contact_value_total": float(seg.loc[seg["contact_value"] > 0, "contact_value"].sum())}}
    _log_backtest(bt_report)
    report["plan"] = bk.plan_summary(seg, as_of, CHANNELS, sp.plan.weeks, sp.capacity.weekly())
    return {"seg": seg, "cuts": cuts, "report": report, "tables": tables, "volume": volume,
            "baselines": baselines_plan}


def _log_backtest(r: dict[str, Any]) -> None:
    log.info("backtest on %s (%s customers): ML tiers monotone in purchase rate: %s, in premium: %s",
             r["snapshot"], f"{r['customers']:,}", r["tiers_monotone_purchase_rate"], r["tiers_monotone_premium"])
    for key, what in (("pamper_vs_rule_pamper", "ML 宠爱 pamper vs rule 宠爱"), ("p1_vs_rule_top", "P1 vs rule top")):
        c = r[key]
        log.info("%s (%s vs %s customers): realised premium %s vs %s CNY (%+.1f%%)", what, f"{c['customers_ml']:,}",
                 f"{c['customers_rule']:,}", f"{c['realised_premium_ml']:,.0f}", f"{c['realised_premium_rule']:,.0f}",
                 c["uplift_pct"])
