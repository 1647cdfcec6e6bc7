"""Errors a user can act on. Stages turn these into one clear message and exit code 2."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Base for problems with the user's inputs or configuration (not bugs)."""


class ConfigError(UserError):
    """params.yaml is missing, malformed, or holds an unknown key or a bad value."""


class InputError(UserError):
    """An input file is missing, unreadable, wrongly encoded or wrongly delimited."""


class RejectThresholdError(UserError):
    """Too many rows were rejected by validation to trust the data."""


def require(paths: Iterable[str | Path], hint: str) -> None:
    """The one missing-input check: the first absent file stops the stage, saying what to run to make it.

    ``hint`` completes "<path> not found: ...", e.g. "run the train stage first (dvc repro train)".
    """
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"{p} not found: {hint}")
