#!/bin/bash
# One part of launch/gpu_check.sh: pytest on TEST_PATHs within BUDGET seconds, its results in SCRATCH.
#
#   bash launch/gpu_check_part.sh NAME BUDGET SCRATCH TEST_PATH...
#
# Writes SCRATCH/NAME.collected (the node ids pytest collected), NAME.xml (JUnit), NAME.log (pytest's output) and
# NAME.part (the part's line of parts.tsv: name, budget, pytest's exit status, seconds taken); prints one line.
# At BUDGET seconds pytest gets SIGINT, which lets it write the JUnit file of the tests that finished (the SIGTERM of
# a plain `timeout` would lose them all), and SIGKILL 20 s later; each test also times out 15 s before the budget,
# so that one that hangs fails with its traceback. MVL_PYTHON (default python3).
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
fi
if (( $# < 4 )); then
    echo "usage: gpu_check_part.sh NAME BUDGET SCRATCH TEST_PATH... (see --help)" >&2
    exit 2
fi
name=$1 budget=$2 scratch=$3
shift 3
began=$(date +%s)
timeout -s INT -k 20 "$budget" "${MVL_PYTHON:-python3}" -m pytest "$@" -p no:cacheprovider -p tests.gpu.collection_record \
    --collected-file "$scratch/$name.collected" -o addopts="-q -ra" --timeout=$(( budget > 30 ? budget - 15 : budget )) \
    --basetemp "$scratch/$name.tmp" --junitxml "$scratch/$name.xml" >"$scratch/$name.log" 2>&1
status=$?
took=$(( $(date +%s) - began ))
printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$status" "$took" >"$scratch/$name.part"
echo "$name: pytest exited $status after $took s of its $budget: $(tail -n 1 "$scratch/$name.log")"
