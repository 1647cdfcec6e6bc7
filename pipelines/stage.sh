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
exec "$py" -m "pipelines.$stage" "$@"
