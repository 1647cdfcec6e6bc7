"""A model report people can look at (DVC stage ``report``).

Writes ``data/reports/report.html``: one self-contained page (images embedded as data URIs, no scripts,
no network) with the data summary, each model's metrics beside its baselines, calibration and gains
curves, the most influential features with readable names, the tier backtest (rule vs ML), the contact
plan's weekly volumes against capacity, and drift between the training and scoring snapshots. The same
figures are written as PNG files to ``data/reports/figures/``. Headings are bilingual (English / 中文).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from features.capabilities import skip_reason
from models import drift as dr  # noqa: E402
from models import segments as sg  # noqa: E402
from pipelines import paths
from pipelines.cli import base_parser, run_stage  # noqa: E402
from pipelines.errors import InputError  # noqa: E402
from pipelines.io import staged_outputs  # noqa: E402
from pipelines.params import load_params  # noqa: E402

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


def _json(p: Path) -> Any:
    return json.loads(p.read_text(encoding="utf-8"))


def _table(df: pd.DataFrame, fmt: dict[str, str] | None = None) -> str:
    fmt = fmt or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            text = (fmt[c].format(v) if c in fmt and isinstance(v, int | float) and pd.notna(v)
                    else "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class Figures:
    """Each figure is kept as PNG bytes: embedded in the page and written beside it."""

    def __init__(self) -> None:
        self.png: dict[str, bytes] = {}

    def add(self, name: str, fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.png[name] = buf.getvalue()
        b64 = base64.b64encode(self.png[name]).decode("ascii")
        return f'<figure><img alt="{name}" src="data:image/png;base64,{b64}"><figcaption>{name}</figcaption></figure>'


def _curves(figs: Figures) -> str:
    out = []
    for model in ("purchase", "lapse"):
        cal, gains = PLOTS / f"calibration_{model}.csv", PLOTS / f"gains_{model}.csv"
        if not (cal.is_file() and gains.is_file()):
            continue
        c, g = pd.read_csv(cal), pd.read_csv(gains)
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        top = max(c["predicted"].max(), c["observed"].max()) * 1.05
        ax[0].plot([0, top], [0, top], ls="--", c="grey", lw=1, label="perfect")
        ax[0].plot(c["predicted"], c["observed"], marker="o", label="model")
        ax[0].set(title=f"{model}: calibration (test snapshot)", xlabel="predicted probability",
                  ylabel="observed rate")
        ax[0].legend()
        ax[1].plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
        ax[1].plot(g["contacted"], g["captured"], marker=".", label="model")
        ax[1].set(title=f"{model}: cumulative gains", xlabel="share contacted (by score)",
                  ylabel="share of positives captured")
        ax[1].legend()
        out.append(figs.add(f"curves_{model}", fig))
    return "".join(out)


def _importance(figs: Figures, importance: dict[str, dict[str, float]], names: dict[str, dict[str, Any]]) -> str:
    out = []
    for model, top in importance.items():
        items = list(top.items())[:12][::-1]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.barh([str(names.get(k, {}).get("en", k))[:55] for k, _ in items], [v for _, v in items])
        ax.set(title=f"{model}: mean |contribution| (top features)", xlabel="mean absolute SHAP value")
        out.append(figs.add(f"importance_{model}", fig))
        rows = pd.DataFrame([{"feature": k, "description": names.get(k, {}).get("en", k),
                              "说明": names.get(k, {}).get("zh", ""), "mean |contribution|": v}
                             for k, v in list(top.items())[:10]])
        out.append(_table(rows, {"mean |contribution|": "{:.4f}"}))
    return "".join(out)


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
            parts.append(f"<h3>{html.escape(title)}</h3>" + _table(t[[by, "中文", *cols]], fmt))
    cross = SEG / "backtest/crosstab_rule_vs_ml.csv"
    if cross.is_file():
        parts.append("<h3>Rule (rows) vs ML (columns) quadrant 规则与模型分层交叉表</h3>" + _table(pd.read_csv(cross)))
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
    return figs.add("plan_volume", fig) + note + _table(vol.head(40), {"contacts": "{:,.0f}"})


def _uplift(figs: Figures, truth: dict[str, Any] | None) -> str:
    """Qini on the out-of-time campaign holdouts, and (synthetic book) the plan's true value vs the oracle's."""
    parts = []
    path = REPORTS / "uplift.json"
    report = _json(path) if path.is_file() else {}
    if "skipped" in report or not report:
        why = html.escape(str(report.get("skipped", "the uplift stage has not run")))
        parts.append(f"<p>No uplift learners: {why}."
                     " The plan uses the propensity form (docs/segments.md).</p>")
    else:
        ev = report.get("holdout_evaluation", {})
        rows = [{"campaign channel": ch, "rows": v["rows"], "ATE": v["ate"], "Qini uplift": v["qini_uplift"],
                 "Qini propensity": v["qini_propensity"], "Qini random": v["qini_random"]}
                for ch, v in ev.items() if isinstance(v, dict) and "qini_uplift" in v]
        if rows:
            parts.append("<p>Out-of-time campaign holdouts (randomised): Qini AUC of the uplift ranking, today's "
                         "propensity ranking and random; pooled = all campaign channels together.</p>"
                         + _table(pd.DataFrame(rows), {"rows": "{:,.0f}", "ATE": "{:+.4f}", "Qini uplift": "{:.4f}",
                                                       "Qini propensity": "{:.4f}", "Qini random": "{:.4f}"}))
        curve = paths.plot("qini_purchase")
        if curve.is_file() and curve.stat().st_size > 0:
            c = pd.read_csv(curve)
            if not c.empty:
                fig, ax = plt.subplots(figsize=(6, 4))
                for col, style in (("uplift", "-"), ("propensity", "--"), ("random", ":")):
                    ax.plot(c["share"], c[col], style, label=col)
                ax.set(title="Qini curve, pooled campaign holdouts", xlabel="share of customers targeted",
                       ylabel="incremental purchases")
                ax.legend()
                parts.append(figs.add("qini_purchase", fig))
    plan = (truth or {}).get("plan")
    if plan:
        names = {"plan": "this plan", "propensity": "propensity-ranked", "rule_playbook": "rule playbook",
                 "random": "random (same volumes)", "oracle": "oracle (true effects)"}
        t = pd.DataFrame([{"week-one plan": names[k], "true value CNY": plan[k]["true_value"],
                           "share of oracle": plan[k]["share_of_oracle"], "touches": plan[k]["touches"],
                           "touches with negative true value": plan[k]["negative_value_share"]}
                          for k in names if k in plan])
        parts.append("<h3>Week one against the synthetic truth 与真实值对比</h3>"
                     + _table(t, {"true value CNY": "{:,.0f}", "share of oracle": "{:.1%}", "touches": "{:,.0f}",
                                  "touches with negative true value": "{:.1%}"}))
    return "".join(parts) or "<p>Nothing to show.</p>"


def _drift(figs: Figures, params: Any, train: dict[str, Any]) -> str:
    feats_path = paths.FEATURES
    meta_path = paths.MODELS / "purchase" / "meta.json"
    if not (feats_path.is_file() and meta_path.is_file()):
        return "<p>No features or model to compare.</p>"
    spec = _json(meta_path)["features"]
    cols = [*spec["numeric"], *spec["categorical"]]
    feats = pd.read_parquet(feats_path, columns=["snapshot_date", *cols])
    dates = pd.to_datetime(feats["snapshot_date"]).dt.date.astype(str)
    ref_date, cur_date = train["split"]["train"][-1], str(params.book.as_of)
    table = dr.feature_drift(feats[dates == ref_date], feats[dates == cur_date], cols, spec["categorical"],
                             params.retrain.drift)
    top = table.head(15)[::-1]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(top["feature"], top["psi"])
    ax.axvline(params.retrain.drift.feature_psi_warn, ls="--", c="red", lw=1, label="warning threshold")
    ax.set(title=f"PSI: last training snapshot {ref_date} vs scoring {cur_date}", xlabel="PSI")
    ax.legend()
    warned = table[table["warning"] != ""]
    return (figs.add("drift", fig) + f"<p>{len(warned)} of {len(table)} features raise a drift warning "
            f"(PSI &gt; {params.retrain.drift.feature_psi_warn}, missing values up, unseen categories).</p>"
            + _table(table.head(15), {"psi": "{:.3f}", "missing_reference": "{:.1%}", "missing_current": "{:.1%}",
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
            + _table(t, {"input rows": "{:,.0f}", "accepted": "{:,.0f}", "quarantined": "{:,.0f}",
                         "reject share": "{:.2%}"}))


def _models(train: dict[str, Any], calibration: dict[str, Any], truth: dict[str, Any] | None) -> str:
    rows = []
    for model, e in train["models"].items():
        for who in ("lightgbm", "logistic", "rules"):
            m = e.get(who)
            if not m:
                continue
            rows.append({"model": model, "scorer": who, "ROC-AUC": m.get("roc_auc"), "PR-AUC": m.get("pr_auc"),
                         "lift@10%": m.get("lift_at_10"), "capture@10%": m.get("capture_at_10"),
                         "Gini": m.get("gini"), "MAE": m.get("mae")})
        if model in calibration:
            c = calibration[model]["test"]
            rows.append({"model": model, "scorer": f"lightgbm + {calibration[model]['method']} calibration",
                         "ROC-AUC": c["roc_auc"], "PR-AUC": c["pr_auc"], "lift@10%": c["lift_at_10"],
                         "capture@10%": c["capture_at_10"], "Brier": c["brier"], "ECE": c["ece"]})
    verdicts = [f"{m}: LightGBM {'beats' if e.get('beats_rules') else 'does NOT beat'} the rules"
                + (f", {'beats' if e.get('beats_logistic') else 'does NOT beat'} the logistic regression"
                   if "beats_logistic" in e else "") for m, e in train["models"].items()]
    out = (f"<p>Out-of-time test snapshot {train['split']['test']}; trained on {len(train['split']['train'])} "
           f"snapshots up to {train['split']['train'][-1]}.</p><ul>"
           + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>"
           + _table(pd.DataFrame(rows), {k: "{:.4f}" for k in ("ROC-AUC", "PR-AUC", "lift@10%", "capture@10%",
                                                               "Gini", "Brier", "ECE")} | {"MAE": "{:,.0f}"}))
    if truth and "skipped" in truth:
        out += f"<p>Check against true probabilities skipped: {html.escape(str(truth['skipped']))}</p>"
    elif truth:
        t = pd.DataFrame([{"model": m, **{k: truth[m][k] for k in ("ece_vs_truth", "spearman_vs_truth",
                                                                   "expected_auc_model", "expected_auc_truth")}}
                          for m in ("purchase", "lapse") if m in truth])
        out += "<h3>Against the synthetic book's true probabilities 与真实概率对比</h3>" + _table(
            t, {c: "{:.4f}" for c in t.columns if c != "model"})
    return out


CSS = """body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222}h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;
padding-bottom:.2em;margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.8em;color:#666}nav a{margin-right:1em}"""


def build_html(params: Any) -> tuple[str, dict[str, bytes]]:
    for p in NEEDED:
        if not p.is_file():
            raise InputError(f"{p} not found: run the pipeline first (dvc repro)")
    validation, features, train = _json(NEEDED[0]), _json(NEEDED[1]), _json(NEEDED[2])
    calibration, seg_report = _json(NEEDED[3]), _json(NEEDED[4])
    importance = _json(NEEDED[5])
    names = {d["name"]: d for d in _json(NEEDED[6])}
    truth_path = REPORTS / "truth_check.json"
    truth = _json(truth_path) if truth_path.is_file() else None
    figs = Figures()
    body = {"data": _data(validation, features), "models": _models(train, calibration, truth),
            "curves": _curves(figs), "features": _importance(figs, importance, names),
            "backtest": _backtest(figs, seg_report), "uplift": _uplift(figs, truth), "plan": _plan(figs),
            "drift": _drift(figs, params, train)}
    nav = "".join(f'<a href="#{k}">{html.escape(en)}</a>' for k, en, _ in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{html.escape(en)} / {html.escape(zh)}</h2>{body[k]}</section>'
                       for k, en, zh in SECTIONS)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Contact priority report '
            f'{params.book.as_of}</title><style>{CSS}</style></head><body><h1>Contact priority model report / '
            f'客户接触优先级模型报告 — as of {params.book.as_of}</h1><nav>{nav}</nav>{sections}</body></html>')
    return page, figs.png


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    reason = skip_reason("report", params.capabilities)
    if reason:  # DVC needs the outputs: a page that says why, and an empty figures folder
        log.info("report skipped: %s", reason)
        with staged_outputs() as out:
            out.path(OUT).write_text("<!doctype html><meta charset='utf-8'><title>Report skipped</title>"
                                     f"<p>{html.escape(reason)}. See data/reports/*.json for the stages' "
                                     "metrics.</p>\n", encoding="utf-8")
            out.path(FIGS / "SKIPPED.txt").write_text(reason + "\n", encoding="utf-8")
        return
    page, pngs = build_html(params)
    with staged_outputs() as out:
        out.path(OUT).write_text(page, encoding="utf-8")
        for name, data in pngs.items():
            out.path(FIGS / f"{name}.png").write_bytes(data)
    log.info("wrote %s (%d KiB, %d figures) and %s/*.png", OUT, len(page) // 1024, len(pngs), FIGS)


def cli(argv: list[str] | None = None) -> int:
    return run_stage("report", main, base_parser("report", __doc__), argv)


if __name__ == "__main__":
    sys.exit(cli())
