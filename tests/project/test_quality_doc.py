"""docs/quality.md scores the ML Test Score point by point: every test it names must exist, every automated
point (1) must name at least one, and the section totals must add up."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

DOC = REPO / "docs/quality.md"
REF = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")


def _functions(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _sections() -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
        elif current and re.match(r"\| \d+ \|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.setdefault(current, []).append((float(cells[2]), cells[3]))
    return out


def test_every_named_test_exists_and_every_automated_point_names_one() -> None:
    sections = _sections()
    assert set(sections) >= {"Data", "Model", "Infrastructure", "Monitoring"}
    for name in ("Data", "Model", "Infrastructure", "Monitoring"):
        assert len(sections[name]) == 7, name
        for score, how in sections[name]:
            refs, current = [], None
            for m in REF.finditer(how):
                current = m.group(1) or current
                assert current, f"{name}: '::{m.group(2)}' names no file"
                refs.append((current, m.group(2)))
            for path, func in refs:
                assert func in _functions(path), f"{name}: {path}::{func} does not exist"
            if score == 1:
                assert refs, f"{name}: an automated point names no test: {how[:80]}"


def test_section_totals_match_the_summary_and_the_final_score_is_the_lowest() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = _sections()
    totals = {name: sum(s for s, _ in rows) for name, rows in sections.items()
              if name in ("Data", "Model", "Infrastructure", "Monitoring")}
    for name, total in totals.items():
        assert f"| {name} | **{total:.1f}** |" in text, (name, total)
    assert f"| **Final (lowest)** | **{min(totals.values()):.1f}** |" in text
    assert min(totals.values()) >= 5
