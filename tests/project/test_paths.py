"""Every data path dvc.yaml names is one that pipelines/paths.py names (one place for each path)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipelines import paths
from tests.conftest import REPO


def _dvc_paths() -> set[str]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    found: set[str] = set()
    for stage in spec["stages"].values():
        for kind in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                name = next(iter(entry)) if isinstance(entry, dict) else str(entry)
                if name.startswith("data/"):
                    found.add(name)
    return found


def _named() -> set[str]:
    consts = {v.as_posix() for v in vars(paths).values() if isinstance(v, Path)}
    return consts


def test_dvc_yaml_names_only_paths_the_paths_module_names() -> None:
    named = _named()
    unknown = []
    for p in sorted(_dvc_paths()):
        stem = Path(p).stem
        if p in named or p in {paths.report(stem).as_posix(), paths.metrics(stem).as_posix(),
                               paths.plot(stem).as_posix()}:
            continue
        unknown.append(p)
    assert not unknown, f"dvc.yaml names data paths pipelines/paths.py does not: {unknown}"


def test_tracking_state_is_never_a_dvc_output() -> None:
    """Run ids and registered versions differ in every clone: inside a DVC output they would make a fresh
    clone's `make run` rewrite dvc.lock."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    outs = {next(iter(e)) if isinstance(e, dict) else str(e) for s in spec["stages"].values()
            for k in ("outs", "metrics", "plots") for e in s.get(k, [])}
    for o in outs:
        for state in (paths.TRACKING, paths.SCORES):
            assert not (o == state.as_posix() or state.as_posix().startswith(o.rstrip("/") + "/")
                        or o.startswith(state.as_posix() + "/")), (o, state)
