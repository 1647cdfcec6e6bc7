#!/bin/sh
# Run one pipeline stage (`python -m pipelines.<stage>`) with the project's interpreter, whichever shell
# started DVC: `.venv/bin/dvc repro`, `dvc exp run` or `make run` need no activated virtualenv.
# The interpreter, first found: $PIPELINE_PYTHON; the active virtualenv; ./.venv (what `make venv`
# builds); python3 on PATH.
set -eu
stage="$1"
shift
if [ -n "${PIPELINE_PYTHON:-}" ]; then
    py="$PIPELINE_PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    py="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
else
    py=python3
    if ! "$py" -c "import pandas, lightgbm, duckdb" 2>/dev/null; then
        echo "pipelines/stage.sh: no .venv here and $py lacks the project's dependencies:" \
             "run \`make venv\` (creates .venv), activate an environment that has them, or set PIPELINE_PYTHON" >&2
        exit 2
    fi
fi
# The same outputs on every x86-64 host with AVX2: NumPy's AVX-512 kernels round some results differently from
# its AVX2 ones (float32 exp in the truth, the last bit of some sums), and so do OpenBLAS's (the logistic
# baselines); both moved dvc.lock's hashes when this project's CI host gained AVX-512. Both libraries are capped
# at their AVX2 kernels unless the caller sets the variable (an empty NPY_DISABLE_CPU_FEATURES lifts NumPy's cap;
# OPENBLAS_CORETYPE names any other core). OpenBLAS is only pinned where the CPU has AVX2: a forced Haswell core
# on an older CPU would stop on an illegal instruction (docs/architecture.md).
export NPY_DISABLE_CPU_FEATURES="${NPY_DISABLE_CPU_FEATURES-X86_V4 AVX512_ICL AVX512_SPR}"
if [ -z "${OPENBLAS_CORETYPE+set}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
fi
exec "$py" -m "pipelines.$stage" "$@"
