"""``pipelines/stage.sh``, the launcher every ``dvc.yaml`` command goes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CAP = "X86_V4 AVX512_ICL AVX512_SPR"


def _launch(python: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    return subprocess.run(["sh", "pipelines/stage.sh", "demo", "--flag"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**base, "PIPELINE_PYTHON": str(python), **env}, check=False)


def _echo(tmp_path: Path) -> Path:
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s|%s|%s" "${NPY_DISABLE_CPU_FEATURES-unset}" "${OPENBLAS_CORETYPE-unset}" '
                    '"$*"\n', encoding="utf-8")
    fake.chmod(0o755)
    return fake


def _has_avx2() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and "avx2" in cpuinfo.read_text(encoding="utf-8").split()


@pytest.mark.parametrize("given, seen", [(None, CAP), ("", ""), ("AVX512_SPR", "AVX512_SPR")])
def test_numpy_is_capped_at_avx2_unless_the_caller_says_otherwise(tmp_path: Path, given: str | None,
                                                                  seen: str) -> None:
    """dvc.lock's hashes must not depend on whether the host has AVX-512 (docs/architecture.md)."""
    done = _launch(_echo(tmp_path), **({} if given is None else {"NPY_DISABLE_CPU_FEATURES": given}))
    assert done.returncode == 0, done.stderr
    numpy_cap, _, args = done.stdout.split("|")
    assert (numpy_cap, args) == (seen, "-m pipelines.demo --flag")


@pytest.mark.parametrize("given", [None, "Zen", ""])
def test_openblas_runs_its_haswell_kernels_where_the_cpu_has_avx2(tmp_path: Path, given: str | None) -> None:
    """A caller's OPENBLAS_CORETYPE (even empty) is kept; unset, it is Haswell on an AVX2 CPU and left unset
    elsewhere (a forced Haswell core on an older CPU would be an illegal instruction)."""
    done = _launch(_echo(tmp_path), **({} if given is None else {"OPENBLAS_CORETYPE": given}))
    assert done.returncode == 0, done.stderr
    expected = given if given is not None else ("Haswell" if _has_avx2() else "unset")
    assert done.stdout.split("|")[1] == expected


def test_the_capped_numpy_uses_no_avx512_kernel(tmp_path: Path) -> None:
    """The cap's names are ones NumPy knows: under it no AVX-512 feature is enabled (on a host without AVX-512
    none was; on one with it, this is what keeps the outputs equal)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nfrom numpy._core._multiarray_umath import __cpu_features__ as f\n"
                     "print(sorted(k for k, v in f.items() if v and k.startswith(('AVX512', 'X86_V4'))))\n",
                     encoding="utf-8")
    wrapper = tmp_path / "python"  # stage.sh appends "-m pipelines.<stage>": run the probe instead
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{probe}"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    done = _launch(wrapper)
    assert done.returncode == 0, done.stderr
    enabled = done.stdout.strip()
    # AVX512F and friends stay detected (NumPy cannot disable baseline-adjacent flags one by one); what matters is
    # that the dispatch targets X86_V4 / AVX512_ICL / AVX512_SPR are off
    assert "X86_V4" not in enabled and "AVX512_ICL" not in enabled and "AVX512_SPR" not in enabled, enabled
