"""The HTML report of a one-file (tabular) source: what applies to it, and what does not, and why.

A tabular source has its own model(s), calibration, gains, reasons and P1-P4 tiers, but no policy archive
or contact history: no rule segments, contact plan or synthetic truth. The page shows the first set the same
way a book's report does (pipelines/report_sections.py) and names the second, so a reader never wonders
whether a section is missing by mistake. Drift compares the rows the model was trained on with the rows it
scores (the score file's rows; without one, the held-out test rows).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from models import drift as dr
from pipelines import paths
from pipelines.errors import require
from pipelines.report_sections import (
    Figures,
    Section,
    curves,
    importance,
    models,
    page,
    plt,
    read_json,
    table,
    uplift_holdouts,
)

NEEDED = [*(paths.report(s) for s in ("validation", "features", "train", "calibration", "segments")),
          paths.IMPORTANCE, paths.DICTIONARY]
SECTIONS: list[Section] = [
    ("data", "Data summary", "数据概览"), ("models", "Models vs baselines", "模型与基线对比"),
    ("curves", "Calibration and cumulative gains", "校准曲线与累积增益"),
    ("features", "Most influential features", "最重要的特征"),
    ("backtest", "Tier backtest on the test rows", "测试集分层回测"),
    ("experiment", "Randomised experiment: uplift per arm", "随机实验:各方案增量效应"),
    ("drift", "Drift: training rows vs scored rows", "数据漂移:训练样本与评分样本"),
    ("not_applicable", "What does not apply to this source", "不适用于此数据源的内容")]
NOT_APPLICABLE = [
    ("Rule segments (宠爱/耕耘/维系/开发, value tiers, hot/warm/cold)", "they are cut from the policy archive and "
     "the contact history, which a one-file source does not have"),
    ("The weekly contact plan, channels and frequency caps", "they need dated contacts per channel"),
    ("The value model and contact value in CNY", "they need premiums from a policy archive (a lapse target with "
     "premium_column ranks tiers by premium at risk instead)"),
    ("The check against true probabilities", "only the synthetic book has a simulated truth"),
]


def build_html(params: Any) -> tuple[str, dict[str, bytes]]:
    """The page and its figures (PNG bytes by name) for a tabular source."""
    require(NEEDED, "run the pipeline first (python -m pipelines.run_source <source>)")
    validation, features, train, calibration, segments, imp, dic = (read_json(p) for p in NEEDED)
    names = {d["name"]: d for d in dic}
    uplift_path = paths.report("uplift")
    uplift = read_json(uplift_path) if uplift_path.is_file() else {}
    figs = Figures()
    body = {"data": _data(validation, features, params), "models": models(train, calibration, None),
            "curves": curves(figs), "features": importance(figs, imp, names, {
                m: e.get("unused_features", []) for m, e in train["models"].items()}),
            "backtest": _backtest(figs, segments),
            "experiment": _experiment(figs, uplift), "drift": _drift(figs, params, segments["target"]),
            "not_applicable": "<ul>" + "".join(f"<li><b>{html.escape(what)}</b>: {html.escape(why)}.</li>"
                                               for what, why in NOT_APPLICABLE) + "</ul>"}
    tab = params.validate_.source.tabular
    title = (f"Contact priority model report / 客户接触优先级模型报告 — {tab.file}, as of {params.book.as_of}")
    return page(title, SECTIONS, body), figs.png


def _data(validation: dict[str, Any], features: dict[str, Any], params: Any) -> str:
    """Rows read, accepted and quarantined (with rules), and each role's size and positive rate per target."""
    tab = params.validate_.source.tabular
    v = validation["tables"]["tabular"]
    rules = ", ".join(f"{r} {n:,}" for r, n in v["rules"].items()) or "none"
    rates = features.get("positive_rates") or {features["label"]: {r: x["positive_rate"]
                                                                   for r, x in features["roles"].items()}}
    rows = [{"role": r, "rows": x["rows"], **{f"positive rate ({lbl})": rates[lbl].get(r) for lbl in rates}}
            for r, x in features["roles"].items()]
    targets = "; ".join(f"{t.target_kind}: '{t.target}' in {t.positive} ({tab.outcome_words(t.target_kind)[0]})"
                        for t in tab.targets())
    return (f"<p>Source {html.escape(tab.file)}: {v['input']:,} rows read, {v['accepted']:,} accepted, "
            f"{v['quarantined']:,} quarantined (rules: {html.escape(rules)}); reconciled: <b>{v['reconciled']}</b>. "
            f"{features['n_features']} feature columns. Target(s): {html.escape(targets)}. Split: "
            f"{'in file order (out of time)' if tab.time_order == 'file' else 'stable random (hashed key)'}.</p>"
            + table(pd.DataFrame(rows), {"rows": "{:,.0f}"} | {f"positive rate ({lbl})": "{:.2%}" for lbl in rates}))


def _backtest(figs: Figures, seg: dict[str, Any]) -> str:
    """Expected against realised outcomes per P1-P4 tier on the held-out test rows."""
    target, bt = seg["target"], seg["backtest"]
    t = pd.DataFrame([{"tier": k, **v} for k, v in bt["tiers"].items()])
    rate = f"realised_{target}_rate"
    t[f"expected_{target}_rate"] = t[f"expected_{target}s"] / t["customers"].where(t["customers"] > 0)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = range(len(t))
    ax.bar([i - 0.2 for i in x], t[f"expected_{target}_rate"], 0.4, label="expected (calibrated)")
    ax.bar([i + 0.2 for i in x], t[rate], 0.4, label="realised")
    ax.set_xticks(list(x), t["tier"])
    ax.set(title=f"{target} rate by tier, test rows", ylabel=f"{target} rate")
    ax.legend()
    verdict = (f"Tiers rank by <b>{html.escape(seg['ranked_by'])}</b>. On {bt['customers']:,} held-out test rows "
               f"the {target} rate falls from P1 to P4: <b>{bt[f'tiers_monotone_{target}_rate']}</b>.")
    scoring = seg.get("scoring", {})
    if scoring:
        verdict += (f" Scored {scoring['customers']:,} rows ("
                    + ", ".join(f"{k} {v:,}" for k, v in scoring.get("tiers", {}).items()) + ").")
    return (f"<p>{verdict}</p>" + figs.add("tier_backtest", fig)
            + table(t, {"customers": "{:,.0f}", f"expected_{target}s": "{:,.1f}", f"realised_{target}s": "{:,.0f}",
                        rate: "{:.2%}", f"expected_{target}_rate": "{:.2%}"}))


def _experiment(figs: Figures, uplift: dict[str, Any]) -> str:
    if "arms" not in uplift:
        why = uplift.get("skipped", "the source declares no randomised experiment (tabular.experiment)")
        return f"<p>Does not apply: {html.escape(str(why))}.</p>"
    head = (f"<p>Arms {html.escape(', '.join(uplift['arms']))} against the control '{html.escape(uplift['control'])}'"
            f"; learners fitted for {html.escape(', '.join(uplift.get('supported', [])) or 'no arm')}.</p>")
    return head + (uplift_holdouts(figs, uplift, "Held-out test rows of the experiment", "arm")
                   or "<p>No arm had enough rows to evaluate.</p>")


def _drift(figs: Figures, params: Any, target: str) -> str:
    meta = paths.MODELS / target / "meta.json"
    spec = read_json(meta)["features"]
    cols = [*spec["numeric"], *spec["categorical"]]
    feats = pd.read_parquet(paths.FEATURES, columns=["role", *cols])
    current = "score" if (feats["role"] == "score").any() else "test"
    ref, cur = feats[feats["role"] == "train"], feats[feats["role"] == current]
    drift = dr.feature_drift(ref, cur, cols, spec["categorical"], params.retrain.drift)
    top = drift.head(15)[::-1]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(top["feature"], top["psi"])
    ax.axvline(params.retrain.drift.feature_psi_warn, ls="--", c="red", lw=1, label="warning threshold")
    ax.set(title=f"PSI: training rows vs {'score-file' if current == 'score' else 'held-out test'} rows",
           xlabel="PSI")
    ax.legend()
    warned = drift[drift["warning"] != ""]
    return (figs.add("drift", fig) + f"<p>{len(ref):,} training rows against {len(cur):,} "
            f"{'rows of the score file' if current == 'score' else 'held-out test rows (no separate score file)'}: "
            f"{len(warned)} of {len(drift)} features raise a drift warning (PSI &gt; "
            f"{params.retrain.drift.feature_psi_warn}, missing values up, unseen categories).</p>"
            + table(drift.head(15), {"psi": "{:.3f}", "missing_reference": "{:.1%}", "missing_current": "{:.1%}",
                                     "unseen_category_share": "{:.1%}"}))
