#!/bin/sh
# `make run`: `dvc repro` with the `truth` stage run beside the others, at the lowest priority.
#
# DVC runs one stage at a time, and most stages keep one of two cores busy (validate, calibrate, register,
# segment, export, LightGBM's single-threaded parts). The synthetic truth (a minute of CPU on the default book)
# feeds only `truth_check`, so it runs in a second `dvc repro` under `nice -n 19`: it takes the core the
# pipeline leaves idle and yields it whenever a stage wants both. DVC documents this (`dvc repro`, "Parallel
# stage execution"): it releases its repository lock while a stage's command runs, and `--wait-for-lock` has
# the other process wait for its turn to record outputs instead of failing. The last `dvc repro` runs what is
# left (truth_check, report) and, after a failure, shows the failing stage again in the foreground.
#
#   sh pipelines/repro.sh [dvc repro options]      # DVC: $DVC, else ./.venv/bin/dvc, else dvc on PATH
#
# Outputs, dvc.lock and MLflow runs are the same as a plain `dvc repro`'s (tests/e2e/test_end_to_end.py).
set -u
if [ -n "${DVC:-}" ]; then
    dvc="$DVC"
elif [ -x .venv/bin/dvc ]; then
    dvc=.venv/bin/dvc
else
    dvc=dvc
fi
side=$(mktemp "${TMPDIR:-/tmp}/repro-truth.XXXXXX") || exit 2
trap 'rm -f "$side"' EXIT
nice -n 19 "$dvc" --wait-for-lock repro "$@" truth >"$side" 2>&1 &
truth_pid=$!
# On an interrupt, stop the side repro with its stage and the stage's workers: a script's background job ignores
# Ctrl-C, and would run on alone. Not by giving it a session of its own (setsid): Linux then schedules it as its
# own autogroup, which shares the CPU equally with this one whatever its nice value (measured: train 47 -> 74 s).
kill_tree() {  # children first; without pgrep (procps), the side repro alone
    if command -v pgrep >/dev/null 2>&1; then
        for child in $(pgrep -P "$1"); do
            kill_tree "$child"
        done
    fi
    kill -TERM "$1" 2>/dev/null
}
stop_side() {
    kill_tree "$truth_pid"
    echo "interrupted: the truth stage beside was stopped too; \`make run\` again resumes" >&2
    exit 130
}
trap stop_side INT TERM
"$dvc" --wait-for-lock repro "$@" export
main_rc=$?
wait "$truth_pid"
truth_rc=$?
echo "---- the truth stage, run beside the others (exit $truth_rc) ----"
cat "$side"
echo "----"
if [ "$main_rc" -ne 0 ]; then
    exit "$main_rc"
fi
"$dvc" --wait-for-lock repro "$@"
