"""Run the pipeline's own stages on another source, in a workspace of its own, leaving params.yaml alone.

    python -m pipelines.run_source benchmarks/sources/bank_marketing.yaml
    python -m pipelines.run_source benchmarks/sources/coil2000.yaml

A source file holds only what differs from ``params.yaml`` (deep-merged over it; a relative
``validate.source.dir`` is resolved against the repository), plus an optional ``run:`` section for this
runner. The merged parameters are validated before anything runs, written to ``<workspace>/params.yaml``,
and every stage of ``dvc.yaml``, in its order, runs as ``python -m pipelines.<stage> --params ...`` with the
workspace as its working directory, so all outputs land in ``<workspace>/data/`` (default workspace:
``data/sources/<name>``) and MLflow logs to ``<workspace>/mlflow.db`` unless ``--tracking-uri`` says
otherwise. Stages that do not apply to the source skip themselves with a message (features/intake/capabilities.py).

``run.top: {n, out}`` additionally writes the ``n`` highest-scored rows of the score file to ``out`` (relative
to the repository) as ``row`` (1-based, in the order of the source's score file) and ``p_purchase``: the CoIL
Challenge's deliverable.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from features.intake.tabular import TabularError, row_of_score_key
from pipelines import paths
from pipelines.cli import EXIT_USER_ERROR, setup_logging
from pipelines.errors import ConfigError, UserError
from pipelines.io import staged_outputs
from pipelines.params import DEFAULT_PARAMS, parse_params

log = logging.getLogger("pipelines.run_source")
REPO = Path(__file__).resolve().parents[1]
DVC_YAML = REPO / "dvc.yaml"
RUNNER_KEYS = {"top"}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def stage_order(dvc_yaml: Path = DVC_YAML) -> list[str]:
    """The stages of dvc.yaml in file order (the order `dvc repro` respects), as pipeline module names."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    names = []
    for name, stage in stages.items():
        m = re.fullmatch(r"(?:python -m pipelines\.|sh pipelines/stage\.sh )(\w+)", str(stage["cmd"]).strip())
        if not m:
            raise ConfigError(f"{dvc_yaml}: stage {name} does not run a pipelines module ({stage['cmd']!r})")
        names.append(m.group(1))
    return names


def load_source(path: Path, base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(merged parameters, runner options) for a source file, validated like params.yaml itself."""
    if not path.is_file():
        raise ConfigError(f"source file {path} not found (see benchmarks/sources/ for examples)")
    overlay = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(overlay, dict):
        raise ConfigError(f"{path} must be a mapping of params.yaml sections")
    run = overlay.pop("run", None) or {}
    unknown = set(run) - RUNNER_KEYS
    if unknown:
        raise ConfigError(f"{path}: run: has unknown key(s) {sorted(unknown)} (known: {sorted(RUNNER_KEYS)})")
    _as_of(overlay, path)
    merged = deep_merge(yaml.safe_load(base.read_text(encoding="utf-8")), overlay)
    src = merged["validate"]["source"]
    if not Path(src["dir"]).is_absolute():  # the source file's own dir resolves against the source file's folder
        own = "dir" in ((overlay.get("validate") or {}).get("source") or {})
        src["dir"] = str(((path.resolve().parent if own else REPO) / src["dir"]).resolve())
    parse_params(merged, path)  # a bad key or value stops here, before any stage runs
    return merged, run


def _as_of(overlay: dict[str, Any], path: Path) -> None:
    """A source must say its as-of date (``book.as_of: YYYY-MM-DD``, or ``today``): inheriting the synthetic
    book's date would stamp a wrong date on every score."""
    book = overlay.get("book") or {}
    if not (overlay.get("validate") or {}).get("source"):
        return  # the synthetic book with other settings: its own as-of applies
    if not isinstance(book, dict) or book.get("as_of") in (None, ""):
        raise ConfigError(f"{path}: set book.as_of (the day after the data's last complete day, quoted: "
                          '"2026-09-30"), or book.as_of: today')
    if str(book["as_of"]).strip().lower() == "today":
        book["as_of"] = dt.date.today().isoformat()


def write_top(scores: Path, n: int, out: Path) -> pd.DataFrame:
    """The ``n`` highest p_purchase rows of a score file as 1-based rows of the source's score file."""
    df = pd.read_parquet(scores, columns=["customer_id", "p_purchase"])
    if len(df) < n:
        raise UserError(f"{scores} has {len(df)} rows, fewer than the {n} to select")
    rows = df["customer_id"].map(row_of_score_key)
    top = pd.DataFrame({"row": rows, "p_purchase": df["p_purchase"]}).sort_values(
        ["p_purchase", "row"], ascending=[False, True], kind="stable").head(n)
    with staged_outputs() as staged:
        top.to_csv(staged.path(out), index=False, float_format="%.6f")
    return top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run_source", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="source file: the params.yaml sections that differ")
    parser.add_argument("--workspace", type=Path, default=None, help="default: data/sources/<source name>")
    parser.add_argument("--base", type=Path, default=DEFAULT_PARAMS, help="parameters merged under the source")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: the workspace's own SQLite)")
    parser.add_argument("--top-out", type=Path, default=None, help="where run.top writes (default: its `out`)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        merged, run = load_source(args.source, args.base)
        stages = stage_order()
    except (ConfigError, UserError) as e:
        log.error("%s", e)
        return EXIT_USER_ERROR
    ws = (args.workspace or paths.DATA / "sources" / args.source.stem).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    params_file = ws / "params.yaml"
    with staged_outputs() as out:
        out.path(params_file).write_text(f"# generated by pipelines.run_source from {args.source} over {args.base}\n"
                                         + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True),
                                         encoding="utf-8")
    env = os.environ | {"MLFLOW_TRACKING_URI": args.tracking_uri or f"sqlite:///{ws / 'mlflow.db'}",
                        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    log.info("source %s -> workspace %s; stages: %s", args.source, ws, " -> ".join(stages))
    t0 = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        log.info("[%d/%d] %s", i, len(stages), stage)
        proc = subprocess.run([sys.executable, "-m", f"pipelines.{stage}", "--params", str(params_file)],
                              cwd=ws, env=env, check=False)
        if proc.returncode != 0:
            log.error("stage %s failed (exit %d); outputs of the earlier stages are in %s", stage, proc.returncode,
                      ws / "data")
            return proc.returncode
    reports = ws / paths.REPORTS
    summary: dict[str, Any] = {"source": str(args.source), "workspace": str(ws),
                               "seconds": round(time.perf_counter() - t0, 1)}
    for name in ("train", "calibration", "segments"):
        f = reports / f"{name}.json"
        if f.is_file():
            summary[name] = json.loads(f.read_text(encoding="utf-8"))
    if "top" in run:
        as_of = merged["book"]["as_of"]
        top_out = args.top_out or REPO / run["top"]["out"]
        try:
            top = write_top(ws / paths.SCORES / f"scores_{as_of}.parquet", int(run["top"]["n"]), top_out)
        except (UserError, TabularError) as e:
            log.error("run.top: %s", e)
            return EXIT_USER_ERROR
        summary["top"] = {"n": len(top), "out": str(top_out)}
        log.info("wrote the %d highest-scored rows to %s", len(top), top_out)
    with staged_outputs() as out:
        out.json(summary, reports / "run_source.json")
    test_rows = summary.get("train", {}).get("split", {}).get("test", "")
    for model, ev in summary.get("train", {}).get("models", {}).items():
        cal = summary.get("calibration", {}).get(model, {}).get("test", {})
        log.info("%s model on the test rows (%s): calibrated AUC %.3f, ECE %.4f (before calibration: LightGBM "
                 "AUC %.3f, logistic regression %.3f)", model, test_rows, cal.get("roc_auc", float("nan")),
                 cal.get("ece", float("nan")), ev["lightgbm"]["roc_auc"], ev["logistic"]["roc_auc"])
    log.info("done in %.0fs; score files in %s", summary["seconds"], ws / paths.SCORES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
