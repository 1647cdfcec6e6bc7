"""Shared fixtures: a small synthetic book built once per session from the real params.yaml."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from features.intake.validation import validate_book
from features.simulator.book import SyntheticBook, simulate_book
from pipelines.params import Params, parse_params

REPO = Path(__file__).resolve().parents[1]


DATASETS = REPO.parent / "shared/datasets"


def public_dataset(relative: str) -> Path:
    """A public benchmark file under ../shared/datasets. Missing data skips the test on a developer's machine
    and fails it in CI, as a missing PostgreSQL does: a benchmark test must never pass by not running."""
    path = DATASETS / relative
    if not path.is_file():
        message = f"public dataset {path} not found: the benchmark tests read ../shared/datasets beside the checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def repo_params_raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def small_params() -> Params:
    raw = repo_params_raw()
    raw["book"]["profile"] = "tiny"
    raw["book"]["profiles"]["tiny"]["n_customers"] = 1500
    raw["generate"]["truth_replicates"] = 2
    return parse_params(raw)


@pytest.fixture(scope="session")
def small_book(small_params: Params) -> SyntheticBook:
    return simulate_book(small_params.synthetic())


@pytest.fixture(scope="session")
def interim(small_book: SyntheticBook, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small book's validated tables as the validate stage writes them (read only: copy to change)."""
    as_of = small_book.truth["as_of"].iloc[0].date()
    res = validate_book({k: v.copy() for k, v in small_book.tables().items()}, as_of)
    folder = tmp_path_factory.mktemp("interim")
    for name, r in res.items():
        r.accepted.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.fixture()
def book_tables(small_book: SyntheticBook) -> dict[str, pd.DataFrame]:
    """A fresh copy of the raw tables that a test may corrupt."""
    return {k: v.copy() for k, v in small_book.tables().items()}


@pytest.fixture(scope="session")
def clean_book(small_params: Params) -> SyntheticBook:
    """A book with no injected dirt: every row must pass the contract."""
    sp = small_params.synthetic().model_copy(update={"dirty_share": 0.0, "truth_replicates": 1, "seed": 7})
    sp = sp.model_copy(update={"size": sp.size.model_copy(update={"n_customers": 400})})
    return simulate_book(sp)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (initdb/pg_ctl); skipped without the binaries, never in CI."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing in CI: .ci/run installs Debian's "
                        "postgresql package")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql to run this test")
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cp-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and no 'postgres' user to run the throwaway cluster")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "crm", "-E", "UTF8", "--no-locale"],
                   check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        url = f"postgresql+psycopg://crm@127.0.0.1:{port}/postgres"
        for _ in range(50):
            try:
                sa.create_engine(url).connect().close()
                break
            except sa.exc.OperationalError:
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
