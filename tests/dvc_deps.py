"""Which project modules each DVC stage runs, found from its imports (used by tests/project/test_dvc_deps.py).

A stage's command runs ``pipelines.<stage>``; everything it imports from ``features``, ``models`` or
``pipelines`` (transitively, including imports inside functions) is code whose change must re-run it. Run
``python -m tests.dvc_deps`` to print the module files each stage needs and which of them ``dvc.yaml``
does not cover; ``--fix`` adds the missing ones to each stage's deps (comments and order kept).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "pipelines")
STAGE_CMD = re.compile(r"(?:-m\s+pipelines\.|pipelines/stage\.sh\s+)([a-z_]+)")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name, or None when it is not a project module."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    path = REPO.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imported(path: Path) -> set[str]:
    """Dotted names a module imports (``from a import b`` yields ``a`` and ``a.b``: b may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def closure(module: str) -> set[Path]:
    """Every project file ``module`` runs: itself and what it imports, transitively (package inits too)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            f = module_file(".".join(parts[:k]))
            if f is None or f in seen:
                continue
            if not f.read_text(encoding="utf-8").strip():
                continue  # an empty package __init__ runs nothing (once it holds code, it is checked)
            seen.add(f)
            todo.extend(_imported(f))
    return seen


def stages(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (the pipelines module its command runs, its deps as written)."""
    spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    out = {}
    for name, stage in spec["stages"].items():
        m = STAGE_CMD.search(str(stage["cmd"]))
        if m is None:
            raise ValueError(f"dvc.yaml stage {name}: cannot tell which pipelines module `{stage['cmd']}` runs")
        out[name] = (f"pipelines.{m.group(1)}", [str(d) for d in stage.get("deps", [])])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def uncovered() -> dict[str, list[str]]:
    """Per stage, the project files it runs that its deps do not cover."""
    out = {}
    for name, (module, deps) in stages().items():
        missing = sorted(p.relative_to(REPO).as_posix() for p in closure(module) if not covered(p, deps))
        if missing:
            out[name] = missing
    return out


def fix(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, list[str]]:
    """Add each stage's uncovered modules to its deps, after its last code dep; the rest of the file is kept."""
    missing = uncovered()
    lines = dvc_yaml.read_text(encoding="utf-8").splitlines(keepends=True)
    out: list[str] = []
    stage, pending = None, []
    for line in lines:
        m = re.match(r"^  ([a-z_]+):", line)
        if m:
            stage = m.group(1)
        if pending and not re.match(r"^      - (features|models|pipelines)\b", line):
            out.extend(f"      - {f}\n" for f in pending)
            pending = []
        out.append(line)
        if stage in missing and re.match(r"^      - (features|models|pipelines)\b", line):
            pending = missing.pop(stage)
    dvc_yaml.write_text("".join(out), encoding="utf-8")
    return uncovered()


def main() -> int:
    if "--fix" in sys.argv[1:]:
        fix()
    for name, (module, deps) in stages().items():
        files = sorted(p.relative_to(REPO).as_posix() for p in closure(module))
        missing = [f for f in files if not covered(REPO / f, deps)]
        sys.stdout.write(f"{name}: runs {len(files)} project files; not covered by its deps: {missing or 'none'}\n")
    return 1 if uncovered() else 0


if __name__ == "__main__":
    raise SystemExit(main())
