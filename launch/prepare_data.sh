#!/bin/bash
#SBATCH --job-name=mvl-prepare-data
#SBATCH --array=0-63
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=%x-%A_%a.out
#
# Data preparation on CPU nodes: raw JSONL / webdataset shards -> one merged packed dataset, as SLURM jobs.
#
#   bash launch/prepare_data.sh submit --input RAW [RAW ...] --work DIR --out DIR --tokenizer TOK \
#       --seq-len 8192 --partitions 64 [--cpus-per-task 64] [--ingest-args "..."] [--pack-args "..."]
#
# submit (run it on the login node) queues four jobs, each starting once the one before succeeded
# (--dependency=afterok, --kill-on-invalid-dep=yes: after a failure the later ones are cancelled):
#   1. ingest        array of --partitions tasks: `ingest --partition I/N` into WORK/samples/
#   2. dedup-plan    one task: duplicates across partitions -> WORK/samples/dedup_plan.json
#   3. apply-pack    array: `dedup-apply` into WORK/deduped/, then `pack --partition I/N` into WORK/packed/
#   4. merge         one task: `merge` the packed partitions into OUT (hard links), then `verify OUT`
# Array task I of N prepares partition I/N with --workers = the task's CPUs (SLURM_CPUS_PER_TASK).
# Every step skips what is finished and redoes what a killed task half-wrote, so after a failure
# (see the jobs' logs in WORK/logs/) run the same submit command again: only what is missing is redone.
#
# A step alone, as a job of its own (the array's size is the number of partitions):
#   sbatch --array=0-63 launch/prepare_data.sh ingest --input RAW --work DIR --out DIR --tokenizer TOK --seq-len 8192
#
#   MVL_PYTHON          the Python interpreter (default python3)
#   MVL_SBATCH_ARGS     extra sbatch options for every job of submit (e.g. "--partition=cpu --account=data")
#   MVL_PREPARE_FAULT   tests only: STEP:I (STEP ingest or pack) kills partition I's STEP with SIGKILL after it
#                       wrote its shards and before its partition.json marker, as a lost node would

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    # sbatch runs a spooled copy of this file: find the original to locate common.sh.
    script="$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -n 1)"
else
    script="$0"
fi
source "$(dirname "$script")/common.sh"
script="$(cd "$(dirname "$script")" && pwd)/$(basename "$script")"

usage() {
    sed -n '10,31p' "$script" | sed 's/^# \{0,1\}//'
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage
    exit $(( $# < 1 ? 2 : 0 ))
fi
step="$1"
shift
arguments=("$@")

inputs=()
work="" out="" tokenizer="" seq_len="" partitions="" cpus=64 ingest_args="" pack_args=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --input) shift; while [[ $# -gt 0 && "$1" != --* ]]; do inputs+=("$1"); shift; done; continue ;;
        --work) work="$2" ;;
        --out) out="$2" ;;
        --tokenizer) tokenizer="$2" ;;
        --seq-len) seq_len="$2" ;;
        --partitions) partitions="$2" ;;
        --cpus-per-task) cpus="$2" ;;
        --ingest-args) ingest_args="$2" ;;
        --pack-args) pack_args="$2" ;;
        *) echo "launch/prepare_data.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2 || { echo "launch/prepare_data.sh: $1 needs a value (see --help)" >&2; exit 2; }
done
for name in work out tokenizer seq_len; do
    if [[ -z "${!name}" ]]; then
        echo "launch/prepare_data.sh: --${name//_/-} is required (see --help)" >&2
        exit 2
    fi
done
if [[ ${#inputs[@]} -eq 0 ]]; then
    echo "launch/prepare_data.sh: --input is required (see --help)" >&2
    exit 2
fi

submit() {
    if [[ -z "$partitions" ]]; then
        echo "launch/prepare_data.sh submit: --partitions is required (see --help)" >&2
        exit 2
    fi
    mkdir -p "$work/logs"
    # shellcheck disable=SC2206  # MVL_SBATCH_ARGS is a word list on purpose
    local common=(--parsable --kill-on-invalid-dep=yes --output="$work/logs/%x-%A_%a.out" ${MVL_SBATCH_ARGS:-})
    local array=(--array="0-$((partitions - 1))" --cpus-per-task="$cpus")
    local single=(--array=0 --cpus-per-task=1)
    local ingest plan pack merge
    ingest="$(sbatch "${common[@]}" "${array[@]}" --job-name=mvl-prepare-ingest "$script" ingest "${arguments[@]}")"
    plan="$(sbatch "${common[@]}" "${single[@]}" --dependency="afterok:${ingest%%;*}" --job-name=mvl-prepare-dedup-plan \
        "$script" dedup-plan "${arguments[@]}")"
    pack="$(sbatch "${common[@]}" "${array[@]}" --dependency="afterok:${plan%%;*}" --job-name=mvl-prepare-apply-pack \
        "$script" apply-pack "${arguments[@]}")"
    merge="$(sbatch "${common[@]}" "${single[@]}" --dependency="afterok:${pack%%;*}" --job-name=mvl-prepare-merge \
        "$script" merge "${arguments[@]}")"
    echo "submitted: ingest=${ingest%%;*} dedup-plan=${plan%%;*} apply-pack=${pack%%;*} merge=${merge%%;*}"
    echo "logs in $work/logs/; after a failure run the same command again: finished partitions are skipped"
}

partition_of_task() {
    # This array task's partition "I/N"; N is --partitions, or the array's size when not given.
    if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
        echo "launch/prepare_data.sh $step: not an array task; submit with sbatch --array=0-(N-1), or use submit" >&2
        exit 2
    fi
    local count="${partitions:-$SLURM_ARRAY_TASK_COUNT}"
    if [[ "$count" != "$SLURM_ARRAY_TASK_COUNT" ]]; then
        echo "launch/prepare_data.sh $step: --partitions $count but the array has $SLURM_ARRAY_TASK_COUNT tasks" >&2
        exit 2
    fi
    partition="$SLURM_ARRAY_TASK_ID/$count"
    folder="$(printf 'partition-%05d-of-%05d' "$SLURM_ARRAY_TASK_ID" "$count")"
}

# Python run in place of `python -m data_prep` by the fault injection: an audit hook SIGKILLs the process
# group when the partition's marker (its last file) is opened. Done from inside the process, the kill lands
# at that point on every run, however loaded the machine is, where a watcher polling the folder could see
# the shards only after the marker was also written.
kill_before_the_marker='
import os, runpy, signal, sys
from data_prep.partitions import MARKER_NAME
from megatron_vl.files import TEMPORARY_FILE_SUFFIX
marker = os.path.realpath(os.path.join(sys.argv.pop(1), MARKER_NAME + TEMPORARY_FILE_SUFFIX))
def kill_at_the_marker(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.path.realpath(args[0]) == marker:
        os.killpg(os.getpgrp(), signal.SIGKILL)
sys.addaudithook(kill_at_the_marker)
runpy.run_module("data_prep", run_name="__main__", alter_sys=True)
'

run_step() {
    # `python -m data_prep ARGS...` for this task's partition; with MVL_PREPARE_FAULT naming it, killed (its
    # whole process group, SIGKILL) when it starts writing OUTPUT_FOLDER's marker, every shard written.
    local name="$1" output_folder="$2"
    shift 2
    echo "megatron-vl: $name of partition $partition on $(hostname) with $workers workers"
    if [[ "${MVL_PREPARE_FAULT:-}" != "$name:${SLURM_ARRAY_TASK_ID}" ]]; then
        "$MVL_PYTHON" -m data_prep "$@"
        return
    fi
    setsid "$MVL_PYTHON" -c "$kill_before_the_marker" "$output_folder" "$@" &
    mvl_wait "$!"
    if [[ "$MVL_STATUS" == 137 ]]; then
        echo "fault injection: SIGKILL to $name of partition $partition after it wrote its shards, before its marker"
        exit 137
    fi
    echo "fault injection missed: $name of partition $partition exited with $MVL_STATUS before writing its marker" >&2
    exit 1
}

workers="${SLURM_CPUS_PER_TASK:-$(nproc)}"
# shellcheck disable=SC2206  # the extra arguments are word lists on purpose
ingest_extra=($ingest_args)
# shellcheck disable=SC2206
pack_extra=($pack_args)
case "$step" in
    submit)
        submit ;;
    ingest)
        partition_of_task
        run_step ingest "$work/samples/$folder" ingest --input "${inputs[@]}" --out "$work/samples" \
            --partition "$partition" --workers "$workers" "${ingest_extra[@]}" ;;
    dedup-plan)
        "$MVL_PYTHON" -m data_prep dedup-plan --input "$work/samples" ;;
    apply-pack)
        partition_of_task
        "$MVL_PYTHON" -m data_prep dedup-apply --input "$work/samples" --partition "$partition" --out "$work/deduped"
        run_step pack "$work/packed/$folder" pack --input "$work/deduped" --tokenizer "$tokenizer" \
            --out "$work/packed" --seq-len "$seq_len" --partition "$partition" --workers "$workers" "${pack_extra[@]}" ;;
    merge)
        "$MVL_PYTHON" -m data_prep merge --input "$work/packed" --out "$out"
        "$MVL_PYTHON" -m data_prep verify "$out" ;;
    *)
        echo "launch/prepare_data.sh: unknown step $step: submit, ingest, dedup-plan, apply-pack or merge (see --help)" >&2
        exit 2 ;;
esac
