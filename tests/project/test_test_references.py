"""Docs and comments name the tests that prove a claim; a moved or renamed test must not leave them pointing at
nothing (issue 19 moved every test file)."""

from __future__ import annotations

import ast
import re
import subprocess

from tests.conftest import REPO

REF = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")


def _defined(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def test_every_test_file_and_function_a_document_or_comment_names_exists() -> None:
    listed = subprocess.run(["git", "ls-files", "*.md", "*.py", "*.yaml", "Makefile", ".ci/run"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    refs = [(f, m.group(1), m.group(2)) for f in listed
            for m in REF.finditer((REPO / f).read_text(encoding="utf-8"))]
    assert len(refs) > 20  # the docs do cite tests; a broken pattern must not pass by finding none
    broken = [f"{where}: {path}{'::' + func if func else ''}" for where, path, func in refs
              if not (REPO / path).is_file() or (func and func not in _defined(path))]
    assert not broken, broken


def test_tests_mirror_the_packages() -> None:
    """Unit tests live under tests/unit/<package>/, end-to-end runs under tests/e2e/, repository checks under
    tests/project/; nothing else at the top but shared fixtures and builders."""
    top = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert not top, f"put these under tests/unit/<package>/, tests/e2e/ or tests/project/: {sorted(top)}"
    for package in ("features", "models", "pipelines"):
        assert any((REPO / "tests/unit" / package).glob("test_*.py")), package
