"""The design card's size limits for the pure libraries: a file over ~450 lines or a function over ~80 is split
by responsibility before it grows further."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80


def _library_files() -> list:
    return sorted(p for pkg in ("features", "models") for p in (REPO / pkg).rglob("*.py"))


def test_no_library_file_is_over_450_lines() -> None:
    long = {p.relative_to(REPO).as_posix(): n for p in _library_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, long


def test_no_library_function_is_over_80_lines() -> None:
    long = {}
    for p in _library_files():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if (n := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:  # type: ignore[operator]
                    long[f"{p.relative_to(REPO).as_posix()}::{node.name}"] = n
    assert not long, long


def test_the_features_package_is_split_by_what_it_holds() -> None:
    top = sorted(p.name for p in (REPO / "features").glob("*.py") if p.name != "__init__.py")
    assert not top, f"features/ holds packages (intake, simulator, snapshots), not loose modules: {top}"
    assert {p.name for p in (REPO / "features").iterdir() if (p / "__init__.py").is_file()} == {
        "intake", "simulator", "snapshots"}
