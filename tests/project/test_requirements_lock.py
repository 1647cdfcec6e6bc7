"""Dependencies change only by a commit: every requirement (runtime and dev) is pinned in requirements.lock to
one version with hashes, and the venv has exactly the pinned versions (ML Test Score, Monitoring 1)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, tuple[str, int]]:
    """package -> (pinned version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^ \\]+)", line)
        if m:
            current = _canon(m.group(1))
            pins[current] = (m.group(3), 0)
        elif current and "--hash=sha256:" in line:
            v, n = pins[current]
            pins[current] = (v, n + 1)
    return pins


def test_every_declared_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    assert pins and all(n >= 1 for _, n in pins.values()), [p for p, (_, n) in pins.items() if n == 0]
    for req in declared:
        name = _canon(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])
        assert name in pins, f"{req} is declared in pyproject.toml but not pinned in requirements.lock (make lock)"


def test_the_installed_versions_are_the_pinned_ones() -> None:
    drift = {}
    for name, (pinned, _) in _pins().items():
        try:
            got = version(name)
        except PackageNotFoundError:
            continue  # platform-specific pins (e.g. Windows-only) are not installed here
        if got != pinned:
            drift[name] = (pinned, got)
    assert not drift, f"installed versions differ from requirements.lock (pinned, installed): {drift}"


def test_dvc_reads_its_yaml_with_the_c_parser() -> None:
    """ruamel.yaml 0.19 dropped its C parser from its own requirements; DVC parses dvc.yaml and dvc.lock with
    ``YAML(typ="safe")`` at every step of `make run`, and in pure Python that was about half of DVC's own time
    (docs/benchmarks.md). ``ruamel.yaml.clib`` in pyproject.toml brings it back."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None, "ruamel.yaml.clib is not installed (pyproject.toml declares it; make venv)"
    assert YAML(typ="safe").Parser is CParser
