"""The report's first screen: what this run produced, which models and code produced it, and what changed since
the previous report.

The numbers come from the headline metrics the stages wrote; the model versions and MLflow run id from
``data/tracking/registry.json`` (tracking state); the commit from git. Each report appends its summary to
``data/tracking/report_history.jsonl``, and the first screen compares with the latest earlier summary that differs,
so a re-run of an unchanged pipeline still shows the last real change.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import paths, tracking
from pipelines.report_sections import table

HISTORY = paths.TRACKING / "report_history.jsonl"
# (key, label, format) of each compared number, in display order
ROWS = [("customers", "customers scored / 评分客户数", "{:,.0f}"), *(
    (f"tier_{t}", f"tier {t} / {t}层客户", "{:,.0f}") for t in ("P1", "P2", "P3", "P4")),
    ("purchase_auc", "purchase AUC, calibrated, test rows / 投保模型AUC", "{:.3f}"),
    ("lapse_auc", "lapse AUC, calibrated, test rows / 退保模型AUC", "{:.3f}"),
    ("week1_touches", "week-one touches planned / 首周计划接触数", "{:,.0f}"),
    ("plan_share", "plan's share of the oracle's true value / 计划价值占最优比例", "{:.1%}")]


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def current(as_of: str) -> dict[str, Any]:
    """This run's summary: headline numbers, model versions, run id and commit."""
    seg, cal, truth = (_json(paths.metrics(s)) for s in ("segments", "calibration", "truth_check"))
    tiers = _json(paths.report("segments")).get("scoring", {}).get("tiers", {})
    registry = _json(paths.REGISTRY)
    summary: dict[str, Any] = {"as_of": as_of, "customers": sum(int(n) for n in tiers.values()) or None,
                               **{f"tier_{t}": int(n) for t, n in tiers.items()}}
    summary |= {k: cal.get(k) for k in ("purchase_auc", "lapse_auc")}
    summary |= {"week1_touches": seg.get("week1_touches"), "plan_share": truth.get("plan_share")}
    summary["models"] = {m: f"{e['name']} v{e['version']}" for m, e in registry.get("models", {}).items()}
    summary["run_id"] = registry.get("run_id", "")
    summary["commit"] = tracking.git_commit()
    return {k: v for k, v in summary.items() if v is not None}


def previous(summary: dict[str, Any], history: Path = HISTORY) -> dict[str, Any] | None:
    """The latest earlier summary that differs from ``summary`` (ignoring the commit's dirty flag)."""
    if not history.is_file():
        return None
    same = _comparable(summary)
    for line in reversed(history.read_text(encoding="utf-8").splitlines()):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: skip it, the earlier ones are whole
        if _comparable(entry) != same:
            return dict(entry)
    return None


def _comparable(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.removesuffix("-dirty") if k == "commit" else v) for k, v in s.items()}


def append(summary: dict[str, Any], history: Path = HISTORY) -> None:
    """Add this report's summary to the history (one JSON line; appended after the page is published)."""
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, ensure_ascii=False, sort_keys=True) + "\n")


def _fmt(fmt: str, v: Any) -> str:
    return "" if v is None else fmt.format(v)


def _change(fmt: str, now: Any, before: Any) -> str:
    if now is None or before is None or now == before:
        return "" if now == before else "new"
    d = now - before
    if "%" in fmt:
        return f"{100 * d:+.1f} pt"
    return ("+" if d > 0 else "") + fmt.format(d)


def _commit(commit: str) -> str:
    return commit.removesuffix("-dirty")[:12] + (" with uncommitted changes" if commit.endswith("-dirty") else "")


def first_screen(now: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The run panel: this run beside the previous differing one, and what produced it."""
    rows = [{"": label, "this run": _fmt(fmt, now.get(k)),
             **({"previous": _fmt(fmt, before.get(k)), "change": _change(fmt, now.get(k), before.get(k))}
                if before else {})} for k, label, fmt in ROWS if k in now or (before and k in before)]
    since = (f"Compared with the previous report (as of {before.get('as_of', '?')}, commit "
             f"{str(before.get('commit', '?'))[:12]}, run {str(before.get('run_id', '?'))[:12]})."
             if before else "The first report in this workspace: no earlier run to compare with.")
    models = ", ".join(f"{m}: {v}" for m, v in now.get("models", {}).items()) or "not registered yet"
    changed_models = before is not None and before.get("models") != now.get("models")
    return (f"<p><b>Models / 模型</b>: {html.escape(models)}{' (new versions)' if changed_models else ''}<br>"
            f"<b>MLflow run</b>: {html.escape(str(now.get('run_id') or 'none'))}<br>"
            f"<b>Code / 代码</b>: commit {html.escape(_commit(str(now.get('commit', 'unknown'))))}</p>"
            f"<p>{html.escape(since)}</p>" + table(pd.DataFrame(rows), {}))
