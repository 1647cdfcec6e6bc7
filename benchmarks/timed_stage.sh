#!/bin/sh
# Time each DVC stage's process: point pipelines/stage.sh at this script and it runs the project's interpreter,
# appending "start <epoch seconds> <args>" and "end <epoch seconds> <exit code> <args>" to $STAGE_TIMES.
#
#   STAGE_TIMES=/tmp/stages.log PIPELINE_PYTHON=$PWD/benchmarks/timed_stage.sh .venv/bin/dvc repro
#
# The gaps between one stage's end and the next one's start are DVC's own work; a stage's process time less the
# "done in" of its log is its start-up (imports) and exit. Used for docs/benchmarks.md ("make run" sections).
set -u
log="${STAGE_TIMES:?set STAGE_TIMES to the file to append to}"
py="${TIMED_PYTHON:-$(dirname "$0")/../.venv/bin/python}"
echo "start $(date +%s.%N) $*" >> "$log"
"$py" "$@"
rc=$?
echo "end $(date +%s.%N) $rc $*" >> "$log"
exit "$rc"
