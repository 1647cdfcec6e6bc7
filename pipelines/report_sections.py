"""The parts of the HTML report that every source shares: the page, tables, figures, and the model sections.

A book's report (pipelines/report.py) and a one-file source's (pipelines/report_tabular.py) both build on
these, so a model is shown the same way whatever the source. Pure rendering from the stages' JSON and plot
files; the stage module decides what to read.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines import paths  # noqa: E402

PLOTS = paths.PLOTS
Section = tuple[str, str, str]  # (anchor, English heading, Chinese heading)


def read_json(p: Path) -> Any:
    return json.loads(p.read_text(encoding="utf-8"))


def table(df: pd.DataFrame, fmt: dict[str, str] | None = None) -> str:
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


def curves(figs: Figures) -> str:
    out = []
    for model in ("purchase", "lapse"):
        cal, gains = PLOTS / f"calibration_{model}.csv", PLOTS / f"gains_{model}.csv"
        if not (cal.is_file() and gains.is_file()):
            continue
        c, g = pd.read_csv(cal), pd.read_csv(gains)
        if c.empty or g.empty:  # a model this source does not train: its declared plots are header-only
            continue
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        top = max(c["predicted"].max(), c["observed"].max()) * 1.05
        ax[0].plot([0, top], [0, top], ls="--", c="grey", lw=1, label="perfect")
        ax[0].plot(c["predicted"], c["observed"], marker="o", label="model")
        ax[0].set(title=f"{model}: calibration (test rows)", xlabel="predicted probability",
                  ylabel="observed rate")
        ax[0].legend()
        ax[1].plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
        ax[1].plot(g["contacted"], g["captured"], marker=".", label="model")
        ax[1].set(title=f"{model}: cumulative gains", xlabel="share contacted (by score)",
                  ylabel="share of positives captured")
        ax[1].legend()
        out.append(figs.add(f"curves_{model}", fig))
    return "".join(out)


def importance(figs: Figures, importance: dict[str, dict[str, float]], names: dict[str, dict[str, Any]],
               unused: dict[str, list[str]] | None = None) -> str:
    out = []
    for model, top in importance.items():
        idle = (unused or {}).get(model, [])
        if idle:
            out.append(f"<p>{model}: {len(idle)} of {len(top)} features are used by no split: "
                       f"{html.escape(', '.join(idle[:30]))}{' ...' if len(idle) > 30 else ''}.</p>")
        items = list(top.items())[:12][::-1]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.barh([str(names.get(k, {}).get("en", k))[:55] for k, _ in items], [v for _, v in items])
        ax.set(title=f"{model}: mean |contribution| (top features)", xlabel="mean absolute SHAP value")
        out.append(figs.add(f"importance_{model}", fig))
        rows = pd.DataFrame([{"feature": k, "description": names.get(k, {}).get("en", k),
                              "说明": names.get(k, {}).get("zh", ""), "mean |contribution|": v}
                             for k, v in list(top.items())[:10]])
        out.append(table(rows, {"mean |contribution|": "{:.4f}"}))
    return "".join(out)


def models(train: dict[str, Any], calibration: dict[str, Any], truth: dict[str, Any] | None) -> str:
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
    verdicts = [f"{m}: LightGBM " + ", ".join(
        f"{'beats' if e[k] else 'does NOT beat'} the {who}" for k, who in (
            ("beats_rules", "rules"), ("beats_logistic", "logistic regression")) if k in e)
        for m, e in train["models"].items()]
    out = (f"<p>{html.escape(split_text(train['split']))}</p><ul>"
           + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>"
           + table(pd.DataFrame(rows), {k: "{:.4f}" for k in ("ROC-AUC", "PR-AUC", "lift@10%", "capture@10%",
                                                               "Gini", "Brier", "ECE")} | {"MAE": "{:,.0f}"}))
    out += slices_table(calibration)
    if truth and "skipped" in truth:
        out += f"<p>Check against true probabilities skipped: {html.escape(str(truth['skipped']))}</p>"
    elif truth:
        t = pd.DataFrame([{"model": m, **{k: truth[m][k] for k in ("ece_vs_truth", "spearman_vs_truth",
                                                                   "expected_auc_model", "expected_auc_truth")}}
                          for m in ("purchase", "lapse") if m in truth])
        out += "<h3>Against the synthetic book's true probabilities 与真实概率对比</h3>" + table(
            t, {c: "{:.4f}" for c in t.columns if c != "model"})
    return out


CSS = """body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222}h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;
padding-bottom:.2em;margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.8em;color:#666}nav a{margin-right:1em}"""


def slices_table(calibration: dict[str, Any]) -> str:
    """Calibrated metrics per slice (gender, age band, province, tenure, contacted) on the test rows."""
    rows = [{"model": m, "slice": s["slice"], "value": s["value"], "rows": s["rows"], "positives": s["positives"],
             "ROC-AUC": s["roc_auc"], "ECE": s["ece"], "share in top 10%": s["top_share"],
             "judged": "yes" if s["judged"] else "too few positives"}
            for m, c in calibration.items() for s in c.get("slices", [])]
    if not rows:
        return "<p>No slice columns (gender, age, province, tenure, contacts) in this source's features.</p>"
    t = pd.DataFrame(rows)
    judged = t[t["judged"] == "yes"]
    worst = judged.loc[judged.groupby("model")["ROC-AUC"].idxmin()] if not judged.empty else judged
    note = "; ".join(f"{r['model']}: lowest slice AUC {r['ROC-AUC']:.3f} ({r['slice']} = {r['value']})"
                     for _, r in worst.iterrows())
    return ("<h3>Slices 分群表现</h3><p>Calibrated model on the test rows, per slice. A slice is judged (and gated "
            "at retraining: <code>retrain.gates.slice_min_auc</code>) when it has enough positives. "
            f"{html.escape(note)}.</p>" + table(t, {"rows": "{:,.0f}", "positives": "{:,.0f}", "ROC-AUC": "{:.3f}",
                                                    "ECE": "{:.4f}", "share in top 10%": "{:.1%}"}))


def split_text(split: dict[str, Any]) -> str:
    """Which rows the test metrics are on: a book's out-of-time snapshot, or a source's own held-out rows."""
    if split.get("kind") == "crossfit":
        return (f"Cross-fitted in {split['folds']} folds: test metrics are {split['test']}, each scored by a model "
                f"that never saw it; the final model trained on {split['train']}.")
    if split.get("kind") == "source":
        return (f"Test metrics on the source's held-out test rows ({split['test']}); trained on {split['train']}, "
                f"early-stopped on {split['valid']}, calibrated on {split['calib']}.")
    return (f"Out-of-time test snapshot {split['test']}; trained on {len(split['train'])} snapshots up to "
            f"{split['train'][-1]}.")


def page(title: str, sections: list[Section], body: dict[str, str]) -> str:
    """One self-contained page: a bilingual heading per section, a navigation bar, no scripts, no network."""
    nav = "".join(f'<a href="#{k}">{html.escape(en)}</a>' for k, en, _ in sections)
    parts = "".join(f'<section id="{k}"><h2>{html.escape(en)} / {html.escape(zh)}</h2>{body[k]}</section>'
                    for k, en, zh in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{parts}</body></html>')


def uplift_holdouts(figs: Figures, report: dict[str, Any], what: str, by: str) -> str:
    """The uplift stage's Qini table on randomised holdouts (campaign channels, or an experiment's arms) and the
    pooled Qini curve, when there is one."""
    parts = []
    ev = report.get("holdout_evaluation", {})
    rows = [{by: ch, "rows": v["rows"], "ATE": v["ate"], "Qini uplift": v["qini_uplift"],
             "Qini propensity": v["qini_propensity"], "Qini random": v["qini_random"]}
            for ch, v in ev.items() if isinstance(v, dict) and "qini_uplift" in v]
    if rows:
        parts.append(f"<p>{html.escape(what)}: Qini AUC of the uplift ranking, the propensity ranking and random"
                     + ("; pooled = all together" if "pooled" in ev else "") + ".</p>"
                     + table(pd.DataFrame(rows), {"rows": "{:,.0f}", "ATE": "{:+.4f}", "Qini uplift": "{:.4f}",
                                                  "Qini propensity": "{:.4f}", "Qini random": "{:.4f}"}))
    curve = paths.plot("qini_purchase")
    if curve.is_file() and curve.stat().st_size > 0:
        c = pd.read_csv(curve)
        if not c.empty and {"share", "uplift", "propensity", "random"} <= set(c.columns):
            fig, ax = plt.subplots(figsize=(6, 4))
            for col, style in (("uplift", "-"), ("propensity", "--"), ("random", ":")):
                ax.plot(c["share"], c[col], style, label=col)
            ax.set(title=f"Qini curve: {what}", xlabel="share of customers targeted", ylabel="incremental successes")
            ax.legend()
            parts.append(figs.add("qini_purchase", fig))
    return "".join(parts)
