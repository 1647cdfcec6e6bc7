"""A model report people can look at (DVC stage ``report``).

Writes ``data/reports/report.html``: one self-contained page (images embedded as data URIs, no scripts,
no network) with the data summary, each model's metrics beside its baselines, calibration and gains
curves, the most influential features with readable names, the tier backtest (rule vs ML), the contact
plan's weekly volumes against capacity, and drift between the training and scoring snapshots. The same
figures are written as PNG files to ``data/reports/figures/``. Headings are bilingual (English / 中文).
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from models import drift as dr
from models import segments as sg
from pipelines import paths, report_run, report_tabular
from pipelines.cli import base_parser, run_stage
from pipelines.errors import require
from pipelines.io import staged_outputs
from pipelines.params import load_params
from pipelines.report_sections import Figures, curves, models, page, plt, read_json, table, uplift_holdouts
from pipelines.report_sections import importance as importance_section

log = logging.getLogger("pipelines.report")
REPORTS, PLOTS, SEG, OUT, FIGS = paths.REPORTS, paths.PLOTS, paths.SEGMENT_DIR, paths.REPORT_HTML, paths.FIGURES
NEEDED = [*(paths.report(s) for s in ("validation", "features", "train", "calibration", "segments")),
          paths.IMPORTANCE, paths.DICTIONARY, paths.PLAN_VOLUME, paths.BACKTEST / "priority_tier.csv"]
SECTIONS = [("data", "Data summary", "数据概览"), ("models", "Models vs baselines", "模型与基线对比"),
            ("curves", "Calibration and cumulative gains", "校准曲线与累积增益"),
            ("features", "Most influential features", "最重要的特征"),
            ("backtest", "Tier backtest: rules vs models", "分层回测:规则与模型"),
            ("uplift", "Uplift and the plan's incremental value", "增量效应与计划价值"),
            ("plan", "Contact plan volumes", "接触计划量"), ("drift", "Drift", "数据漂移")]


def _backtest(figs: Figures, seg_report: dict[str, Any]) -> str:
    ml = pd.read_csv(SEG / "backtest/priority_tier.csv")
    rule = pd.read_csv(SEG / "backtest/rule_tier.csv") if (SEG / "backtest/rule_tier.csv").is_file() else None
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(ml))
    w = 0.4
    ax[0].bar([i - w / 2 for i in x], ml["realised_purchase_rate"], w, label="ML tiers")
    ax[1].bar([i - w / 2 for i in x], ml["realised_premium_per_customer"], w, label="ML tiers")
    if rule is not None:
        rule = rule.set_index("rule_tier").reindex(ml["priority_tier"]).reset_index()
        ax[0].bar([i + w / 2 for i in x], rule["realised_purchase_rate"], w, label="rule tiers")
        ax[1].bar([i + w / 2 for i in x], rule["realised_premium_per_customer"], w, label="rule tiers")
    for a, t in zip(ax, ("realised purchase rate", "realised premium per customer (CNY)"), strict=True):
        a.set_xticks(list(x), ml["priority_tier"])
        a.set(title=t)
        a.legend()
    parts = [figs.add("tier_backtest", fig)]
    bt = seg_report["backtest"]
    verdict = (f"Backtest snapshot {bt['snapshot']} ({bt['customers']:,} customers). ML tiers monotone in "
               f"purchase rate: <b>{bt['tiers_monotone_purchase_rate']}</b>; in premium per customer: "
               f"<b>{bt['tiers_monotone_premium']}</b>.")
    for key, what in (("pamper_vs_rule_pamper", "ML 宠爱 pamper vs rule 宠爱 (same size)"),
                      ("p1_vs_rule_top", "P1 vs the rules' top of the same size")):
        c = bt[key]
        verdict += (f"<br>{what}: realised premium {c['realised_premium_ml']:,.0f} vs {c['realised_premium_rule']:,.0f}"
                    f" CNY ({c['uplift_pct']:+.1f}%).")
    parts.insert(0, f"<p>{verdict}</p>")
    cols = ["customers", "expected_purchases", "realised_purchases", "expected_lapses", "realised_lapses",
            "realised_premium"]
    fmt = {c: "{:,.1f}" for c in cols} | {"customers": "{:,.0f}", "realised_premium": "{:,.0f}"}
    for by, title in (("priority_tier", "ML tiers 模型优先级"), ("rule_tier", "Rule tiers 规则优先级"),
                      ("ml_quadrant", "ML quadrant 模型分层"), ("rule_quadrant", "Rule quadrant 规则分层"),
                      ("value_tier", "Value tier 客户价值"), ("closeness", "Closeness 关系紧密程度"),
                      ("behaviour", "Behaviour 行为特征")):
        f = SEG / f"backtest/{by}.csv"
        if f.is_file():
            t = pd.read_csv(f)
            zh = {**sg.QUADRANT_ZH, **sg.VALUE_TIER_ZH, **sg.CLOSENESS_ZH, **sg.BEHAVIOUR_ZH}
            t.insert(1, "中文", t[by].map(zh).fillna(""))
            parts.append(f"<h3>{html.escape(title)}</h3>" + table(t[[by, "中文", *cols]], fmt))
    cross = SEG / "backtest/crosstab_rule_vs_ml.csv"
    if cross.is_file():
        parts.append("<h3>Rule (rows) vs ML (columns) quadrant 规则与模型分层交叉表</h3>" + table(pd.read_csv(cross)))
    return "".join(parts)


def _plan(figs: Figures) -> str:
    vol = pd.read_csv(SEG / "plan_volume.csv")
    if vol.empty:
        return "<p>No planned contacts.</p>"
    pivot = vol.pivot_table(index="week", columns="channel", values="contacts", aggfunc="sum", fill_value=0)
    fig, ax = plt.subplots(figsize=(10, 4))
    bottom = None
    for ch in pivot.columns:
        ax.bar(pivot.index, pivot[ch], bottom=bottom, label=ch)
        bottom = pivot[ch] if bottom is None else bottom + pivot[ch]
    caps = vol.dropna(subset=["capacity"]).groupby("channel")["capacity"].first()
    for ch, cap in caps.items():
        ax.axhline(cap, ls=":", lw=1, c="black")
        ax.text(pivot.index.max(), cap, f" {ch} capacity", va="bottom", fontsize=8)
    ax.set(title="planned first touches per week (week 0 starts at as-of)", xlabel="plan week",
           ylabel="contacts")
    ax.legend(ncol=4, fontsize=8)
    capped = vol.dropna(subset=["capacity"])
    over = capped[capped["contacts"] > capped["capacity"]]
    note = ("<p>Agent-led channels never exceed their weekly capacity.</p>" if over.empty else
            f"<p><b>{len(over)} week/channel cells exceed capacity.</b></p>")
    return figs.add("plan_volume", fig) + note + table(vol.head(40), {"contacts": "{:,.0f}"})


def _uplift(figs: Figures, truth: dict[str, Any] | None) -> str:
    """Qini on the out-of-time campaign holdouts, and (synthetic book) the plan's true value vs the oracle's."""
    path = REPORTS / "uplift.json"
    report = read_json(path) if path.is_file() else {}
    if "skipped" in report or not report:
        why = html.escape(str(report.get("skipped", "the uplift stage has not run")))
        parts = [f"<p>No uplift learners: {why}. The plan uses the propensity form (docs/segments.md).</p>"]
    else:
        parts = [uplift_holdouts(figs, report, "Out-of-time campaign holdouts (randomised)", "campaign channel")]
    plan = (truth or {}).get("plan")
    if plan:
        names = {"plan": "this plan", "propensity": "propensity-ranked", "rule_playbook": "rule playbook",
                 "random": "random (same volumes)", "oracle": "oracle (true effects)"}
        t = pd.DataFrame([{"week-one plan": names[k], "true value CNY": plan[k]["true_value"],
                           "share of oracle": plan[k]["share_of_oracle"], "touches": plan[k]["touches"],
                           "touches with negative true value": plan[k]["negative_value_share"]}
                          for k in names if k in plan])
        parts.append("<h3>Week one against the synthetic truth 与真实值对比</h3>"
                     + table(t, {"true value CNY": "{:,.0f}", "share of oracle": "{:.1%}", "touches": "{:,.0f}",
                                 "touches with negative true value": "{:.1%}"}))
    return "".join(parts) or "<p>Nothing to show.</p>"


DRIFT_COLUMNS_AT_ONCE = 16  # the scoring snapshot's columns read per pass when comparing it with training


def _feature_drift(feats_path: Path, ref_date: str, cur_date: str, cols: list[str],
                   categorical: dict[str, list[str]], p: dr.DriftParams) -> pd.DataFrame:
    """``dr.feature_drift`` of the scoring snapshot against the last training snapshot, the scoring snapshot's
    columns read a few at a time: each feature's drift is its own, so the table is the same as from one read,
    and at 5M customers the snapshot's 131 features (5 GB, and a filtered copy) are never in memory at once."""
    def on(day: str, columns: list[str]) -> pd.DataFrame:
        return pd.read_parquet(feats_path, columns=columns,
                               filters=[("snapshot_date", "in", [dt.date.fromisoformat(day)])])

    reference = on(ref_date, cols)  # a training snapshot: the sampled customers only
    parts = [dr.feature_drift(reference, on(cur_date, group), group, categorical, p)
             for group in (cols[i:i + DRIFT_COLUMNS_AT_ONCE] for i in range(0, len(cols), DRIFT_COLUMNS_AT_ONCE))]
    # each part is sorted by PSI, stably from column order; a stable sort of them in column order is the same
    # order as one sort of the whole
    return pd.concat(parts, ignore_index=True).sort_values("psi", ascending=False, kind="stable") \
        .reset_index(drop=True)


def _drift(figs: Figures, params: Any, train: dict[str, Any]) -> str:
    feats_path = paths.FEATURES
    meta_path = paths.MODELS / "purchase" / "meta.json"
    if not (feats_path.is_file() and meta_path.is_file()):
        return "<p>No features or model to compare.</p>"
    spec = read_json(meta_path)["features"]
    cols = [*spec["numeric"], *spec["categorical"]]
    ref_date, cur_date = train["split"]["train"][-1], str(params.book.as_of)
    drift_table = _feature_drift(feats_path, ref_date, cur_date, cols, spec["categorical"], params.retrain.drift)
    top = drift_table.head(15)[::-1]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(top["feature"], top["psi"])
    ax.axvline(params.retrain.drift.feature_psi_warn, ls="--", c="red", lw=1, label="warning threshold")
    ax.set(title=f"PSI: last training snapshot {ref_date} vs scoring {cur_date}", xlabel="PSI")
    ax.legend()
    warned = drift_table[drift_table["warning"] != ""]
    return (figs.add("drift", fig) + f"<p>{len(warned)} of {len(drift_table)} features raise a drift warning "
            f"(PSI &gt; {params.retrain.drift.feature_psi_warn}, missing values up, unseen categories).</p>"
            + table(drift_table.head(15), {"psi": "{:.3f}", "missing_reference": "{:.1%}", "missing_current": "{:.1%}",
                                      "unseen_category_share": "{:.1%}"}))


def _data(validation: dict[str, Any], features: dict[str, Any]) -> str:
    t = pd.DataFrame([{"table": k, "input rows": v["input"], "accepted": v["accepted"],
                       "quarantined": v["quarantined"], "reject share": v["reject_share"],
                       "rules": ", ".join(f"{r} {n}" for r, n in v["rules"].items())}
                      for k, v in validation["tables"].items()])
    snaps = features["snapshots"]
    return (f"<p>As-of {html.escape(str(features['as_of']))}; {len(snaps)} snapshots from "
            f"{snaps[0]['snapshot_date']} to {snaps[-1]['snapshot_date']}; {features['rows']:,} feature rows, "
            f"{features['n_features']} features; label horizon {features['horizon_days']} days. Validation "
            f"reconciled: <b>{validation['reconciled']}</b>.</p>"
            + table(t, {"input rows": "{:,.0f}", "accepted": "{:,.0f}", "quarantined": "{:,.0f}",
                         "reject share": "{:.2%}"}))




def build_html(params: Any) -> tuple[str, dict[str, bytes]]:
    require(NEEDED, "run the pipeline first (dvc repro)")
    validation, features, train = read_json(NEEDED[0]), read_json(NEEDED[1]), read_json(NEEDED[2])
    calibration, seg_report = read_json(NEEDED[3]), read_json(NEEDED[4])
    importance = read_json(NEEDED[5])
    names = {d["name"]: d for d in read_json(NEEDED[6])}
    truth_path = REPORTS / "truth_check.json"
    truth = read_json(truth_path) if truth_path.is_file() else None
    figs = Figures()
    body = {"data": _data(validation, features), "models": models(train, calibration, truth),
            "curves": curves(figs), "features": importance_section(figs, importance, names, {
                m: e.get("unused_features", []) for m, e in train["models"].items()}),
            "backtest": _backtest(figs, seg_report), "uplift": _uplift(figs, truth), "plan": _plan(figs),
            "drift": _drift(figs, params, train)}
    title = f"Contact priority model report / 客户接触优先级模型报告 — as of {params.book.as_of}"
    return page(title, SECTIONS, body), figs.png


def with_run_panel(page_html: str, summary: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The first screen (report_run.py) right under the title: counts, versions, run id, commit, change."""
    panel = (f'<section id="run"><h2>This run / 本次运行</h2>{report_run.first_screen(summary, before)}</section>')
    return page_html.replace("</h1>", "</h1>" + panel, 1)


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    caps = params.capabilities
    # a book's page has its segments, plan and uplift; a one-file source's says what does not apply to it
    html_page, pngs = build_html(params) if caps.archive else report_tabular.build_html(params)
    summary = report_run.current(str(params.book.as_of))
    html_page = with_run_panel(html_page, summary, report_run.previous(summary))
    with staged_outputs() as out:
        out.path(OUT).write_text(html_page, encoding="utf-8")
        for name, data in pngs.items():
            out.path(FIGS / f"{name}.png").write_bytes(data)
    report_run.append(summary)
    log.info("wrote %s (%d KiB, %d figures) and %s/*.png", OUT, len(html_page) // 1024, len(pngs), FIGS)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("report", main, base_parser("report", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
