"""dvc.yaml's deps cover every project module each stage imports, so `dvc repro` re-runs a stage whose
code changed (tests/dvc_deps.py finds the imports)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import dvc_deps


def test_every_stage_names_a_pipelines_module() -> None:
    found = dvc_deps.stages()
    assert found, "dvc.yaml has no stages"
    for name, (module, _) in found.items():
        assert dvc_deps.module_file(module) is not None, f"stage {name} runs {module}, which does not exist"


def test_deps_cover_every_imported_project_module() -> None:
    missing = dvc_deps.uncovered()
    assert not missing, ("dvc.yaml deps miss modules their stage imports (add them, or the package; "
                         f"`python -m tests.dvc_deps` lists them): {missing}")


def test_the_import_walk_sees_function_level_and_from_imports(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: an import inside a function, and `from pkg import module`, both count."""
    for pkg in dvc_deps.PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "pipelines" / "stage_a.py").write_text(
        "from pipelines import helper\n\ndef f():\n    import models.deep\n", encoding="utf-8")
    (tmp_path / "pipelines" / "helper.py").write_text("from features.sql import Q\n", encoding="utf-8")
    (tmp_path / "models" / "deep.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "features" / "sql.py").write_text("Q = 1\n", encoding="utf-8")
    (tmp_path / "features" / "unused.py").write_text("Q = 2\n", encoding="utf-8")
    monkeypatch.setattr(dvc_deps, "REPO", tmp_path)
    got = {p.relative_to(tmp_path).as_posix() for p in dvc_deps.closure("pipelines.stage_a")}
    assert got == {"pipelines/stage_a.py", "pipelines/helper.py", "models/deep.py", "features/sql.py"}
    assert dvc_deps.covered(tmp_path / "models" / "deep.py", ["models"])
    assert not dvc_deps.covered(tmp_path / "models" / "deep.py", ["models/dee"])


def test_no_stage_imports_another_stage() -> None:
    """Issue 19: stages only wire; what two stages share lives in a non-stage module (retrain, the monthly cycle,
    runs the stages through `dvc repro`, never by importing them)."""
    modules = {m for m, _ in dvc_deps.stages().values()} | {"pipelines.retrain"}
    files = {m: dvc_deps.module_file(m) for m in modules}
    crossing = {m: sorted(other for other, f in files.items() if other != m and f in dvc_deps.closure(m))
                for m in modules}
    assert len(modules) > 8 and not {m: c for m, c in crossing.items() if c}
