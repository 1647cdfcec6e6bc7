#!/bin/sh
# `make run`: `dvc repro`, with the stages that do not wait on each other run at the same time.
#
# DVC runs one stage at a time, and most stages keep one of two cores busy. Three branches of dvc.yaml's graph
# need not wait for the chain generate -> validate -> features -> train -> calibrate -> uplift -> segment: the
# synthetic `truth` (read by `truth_check` only; a minute and a half of CPU on the default book) runs from the
# start at the lowest priority (`nice -n 19`), on the core the chain leaves idle; `register` runs beside `uplift`,
# and `export` beside `truth_check` and `report` (which reads none of its outputs). DVC documents this (`dvc
# repro`, "Parallel stage execution"): it releases its repository lock while a stage's command runs, and
# `--wait-for-lock` has another `dvc repro` wait for its turn to record outputs instead of failing. Each step is
# `dvc repro --single-item <stages>` in the graph's order (tests/unit/pipelines/test_repro_sh.py checks the
# schedule against dvc.yaml), so a stage that has not changed is skipped as in a plain `dvc repro`, and
# `--force` forces each stage once.
#
#   sh pipelines/repro.sh [-f|--force] [-v|--verbose] [-q|--quiet] [--pull] [--allow-missing] [--no-run-cache]
#
# DVC: $DVC, else ./.venv/bin/dvc, else dvc on PATH. Any other argument (targets, --dry, --keep-going, ...)
# runs a plain `dvc repro` with the arguments, one stage after another. Outputs, dvc.lock and MLflow runs are
# the same as a plain `dvc repro`'s (tests/e2e/test_end_to_end.py).
set -u
if [ -n "${DVC:-}" ]; then
    dvc="$DVC"
elif [ -x .venv/bin/dvc ]; then
    dvc=.venv/bin/dvc
else
    dvc=dvc
fi
opts=""
for arg in "$@"; do
    case "$arg" in
        -f|--force|-v|--verbose|-q|--quiet|--pull|--allow-missing|--no-run-cache) opts="$opts $arg" ;;
        *)
            echo "pipelines/repro.sh: '$arg' given: a plain \`dvc repro $*\`, one stage after another" >&2
            exec "$dvc" repro "$@" ;;
    esac
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/repro.XXXXXX") || exit 2
trap 'rm -rf "$logs"' EXIT
repro() {  # the stages named, in this order, each run only if it changed
    # shellcheck disable=SC2086  # $opts: the allowed options above, none with a space
    "$dvc" --wait-for-lock repro $opts --single-item "$@"
}
side_pids=""
beside() {  # repro "$2 ..." in the background, its output to $logs/$1 (shown when it has ended)
    name="$1"
    shift
    repro "$@" >"$logs/$name" 2>&1 &
    side_pids="$side_pids $!"
    eval "pid_$name=$!"
}
shown() {  # wait for a side repro, show its output as one block; its exit code
    eval "pid=\$pid_$1"
    wait "$pid"
    code=$?
    : >"$logs/$1.shown"
    echo "---- $1, run beside the others (exit $code) ----"
    cat "$logs/$1"
    echo "----"
    return "$code"
}
# On an interrupt, stop the side repros with their stages and the stages' workers: a script's background job
# ignores Ctrl-C, and would run on alone. Not by giving them a session of their own (setsid): Linux then
# schedules each as its own autogroup, which shares the CPU equally with this one whatever its nice value
# (measured: train 47 -> 74 s).
kill_tree() {  # children first; without pgrep (procps), the side repro alone
    if command -v pgrep >/dev/null 2>&1; then
        for child in $(pgrep -P "$1"); do
            kill_tree "$child"
        done
    fi
    kill -TERM "$1" 2>/dev/null
}
stop_sides() {
    for pid in $side_pids; do
        kill_tree "$pid"
    done
    echo "interrupted: the stages run beside were stopped too; \`make run\` again resumes" >&2
    exit 130
}
trap stop_sides INT TERM
finish() {  # "$1" failed with code "$2": wait for what still runs beside (its output shown), exit with the code
    echo "pipelines/repro.sh: $1 failed (exit $2); waiting for the repros beside to end" >&2
    for name in truth register export; do
        eval "pid=\${pid_$name:-}"
        if [ -n "$pid" ] && [ ! -e "$logs/$name.shown" ]; then
            shown "$name"
        fi
    done
    exit "$2"
}
both() {  # a step ("$1", exit code "$2") with a repro beside it ("$3", "$4"): the step's failure first
    if [ "$2" -ne 0 ]; then finish "$1" "$2"; fi
    if [ "$4" -ne 0 ]; then finish "$3" "$4"; fi
}

nice -n 19 "$dvc" --wait-for-lock repro $opts --single-item truth >"$logs/truth" 2>&1 &  # shellcheck disable=SC2086
side_pids="$!"
pid_truth=$!
repro generate validate features train calibrate || finish "the chain up to calibrate" $?
beside register register
repro uplift segment
rc=$?
shown register
both "uplift or segment" "$rc" register $?
beside export export  # needs no truth; and `report` reads none of its outputs
shown truth || finish truth $?
repro truth_check report
rc=$?
shown export
both "truth_check or report" "$rc" export $?
