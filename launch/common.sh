# Shared by the stage scripts (sourced, not run). Everything a stage needs comes from environment
# variables with the defaults below; override them with `export` or `sbatch --export=ALL,VAR=...`.
#
#   MVL_MODEL            model preset: mimo_vl_7b (default) or tiny
#   MVL_DATA_ROOT        root of the packed datasets the recipes name          (default /data/megatron-vl)
#   MVL_CHECKPOINT_ROOT  root of all stages' checkpoints, one folder per stage (default /checkpoints/megatron-vl)
#   MVL_TOKENIZER        tokenizer.json / .model / its directory               (default $MVL_DATA_ROOT/tokenizer)
#   MVL_LOG_ROOT         TensorBoard and metrics                               (default $MVL_CHECKPOINT_ROOT/logs)
#   MVL_GPUS_PER_NODE    ranks per node       (default: what the job asked for: --ntasks-per-node other
#                                              than 1, else --gpus-per-node, else --gres=gpu:N; see
#                                              megatron_vl/runtime/slurm_job.py)
#   MVL_MASTER_PORT      rendezvous port      (default: derived from the job id)
#   MVL_SHUTDOWN_TIMEOUT seconds torchrun lets the ranks exit after SIGINT, SIGHUP or SIGQUIT (default 600)
#   MVL_RUN_OUTCOME      where rank 0 reports how the run ended (default: a file per job and restart
#                        under $MVL_CHECKPOINT_ROOT/.run-outcomes, or a temporary file for local.sh)
#   MVL_TRAIN_ARGS       extra arguments for `python -m megatron_vl.training.train`
#   MVL_PYTHON           the Python interpreter (default python3)

set -euo pipefail

MVL_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${MVL_MODEL:=mimo_vl_7b}"
: "${MVL_DATA_ROOT:=/data/megatron-vl}"
: "${MVL_CHECKPOINT_ROOT:=/checkpoints/megatron-vl}"
: "${MVL_TOKENIZER:=$MVL_DATA_ROOT/tokenizer}"
: "${MVL_LOG_ROOT:=$MVL_CHECKPOINT_ROOT/logs}"
: "${MVL_SHUTDOWN_TIMEOUT:=600}"
: "${MVL_TRAIN_ARGS:=}"
: "${MVL_PYTHON:=python3}"
export MVL_MODEL MVL_DATA_ROOT MVL_CHECKPOINT_ROOT MVL_TOKENIZER MVL_LOG_ROOT
export PYTHONPATH="$MVL_REPO${PYTHONPATH:+:$PYTHONPATH}"

# NCCL: fail fast on a hung collective instead of waiting out the job; InfiniBand when present.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export NCCL_IB_TIMEOUT="${NCCL_IB_TIMEOUT:-22}"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export CUDA_DEVICE_MAX_CONNECTIONS=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

mvl_train_command() {
    # The training entry point for one stage (the recipe name), as an array in MVL_CMD.
    local stage="$1"
    MVL_CMD=(-m megatron_vl.training.train --recipe "$stage" --model "$MVL_MODEL")
    # shellcheck disable=SC2206  # MVL_TRAIN_ARGS is a word list on purpose
    MVL_CMD+=($MVL_TRAIN_ARGS)
}

mvl_now() {
    date +%s.%N
}

mvl_wait() {
    # Wait for PID to exit and set MVL_STATUS to its exit status. `wait` returns early when a trapped
    # signal arrives (the trap relays it): keep waiting for the process itself.
    local pid="$1"
    while true; do
        wait "$pid" && MVL_STATUS=0 || MVL_STATUS=$?
        kill -0 "$pid" 2>/dev/null || break
    done
}

mvl_report_outcome() {
    # After the ranks exit: how the run ended, from rank 0's outcome file. Sets MVL_OUTCOME_CODE to
    # 0 (stopped, its checkpoint saved: resume it), 3 (complete) or 1 (not confirmed: failed or killed).
    local stage="$1"
    local report
    MVL_OUTCOME_CODE=0
    report="$("$MVL_PYTHON" -m megatron_vl.training.run_outcome "$MVL_RUN_OUTCOME")" || MVL_OUTCOME_CODE=$?
    echo "megatron-vl: $report (launcher exited at $(mvl_now))"
}

mvl_run_slurm_stage() {
    # One stage under sbatch: one torchrun per node (srun), rendezvous on the first node of the job,
    # SLURM's warning signal relayed to every rank (they save and exit), then a requeue so the
    # next allocation resumes from that checkpoint; only once rank 0 confirmed that checkpoint.
    local stage="$1"
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
        echo "launch/$stage: not inside a SLURM job; submit with sbatch, or run launch/local.sh $stage" >&2
        exit 2
    fi
    local nodes="${SLURM_JOB_NUM_NODES:-1}"
    local gpus
    gpus="$("$MVL_PYTHON" -m megatron_vl.runtime.slurm_job ranks-per-node)" || exit 2
    : "${MVL_RUN_OUTCOME:=$MVL_CHECKPOINT_ROOT/.run-outcomes/$stage-$SLURM_JOB_ID-${SLURM_RESTART_COUNT:-0}.json}"
    export MVL_RUN_OUTCOME
    rm -f "$MVL_RUN_OUTCOME"
    local master
    master="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    local port="${MVL_MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"
    mvl_train_command "$stage"
    echo "megatron-vl $stage: job $SLURM_JOB_ID, $nodes node(s) x $gpus rank(s), rendezvous $master:$port"

    # srun relays the signal to the launcher on every node, which passes it to each rank (not to torchrun:
    # megatron_vl/runtime/launcher.py).
    local interrupted=0
    trap 'interrupted=1; echo "megatron-vl $stage: got the warning signal at $(mvl_now), asking ranks to save"; kill -USR1 "$srun_pid" 2>/dev/null || true' USR1 TERM
    srun --kill-on-bad-exit=1 --ntasks-per-node=1 --nodes="$nodes" \
        "$MVL_PYTHON" -m megatron_vl.runtime.launcher \
        --nnodes="$nodes" --nproc-per-node="$gpus" \
        --rdzv-backend=c10d --rdzv-endpoint="$master:$port" --rdzv-id="$SLURM_JOB_ID" \
        --shutdown-timeout="$MVL_SHUTDOWN_TIMEOUT" \
        "${MVL_CMD[@]}" &
    local srun_pid=$!
    mvl_wait "$srun_pid"
    mvl_report_outcome "$stage"
    case "$MVL_OUTCOME_CODE" in
        0)
            echo "megatron-vl $stage: the stop's checkpoint is saved; requeueing job $SLURM_JOB_ID to resume"
            scontrol requeue "$SLURM_JOB_ID" \
                || echo "megatron-vl $stage: SLURM did not requeue the job (cancelled, or requeued by SLURM itself);" \
                        "submit the script again to resume from that checkpoint"
            exit 0 ;;
        3)
            exit 0 ;;
    esac
    if (( interrupted )); then
        echo "megatron-vl $stage: ERROR: the warning signal came, but the ranks did not confirm a checkpoint of the" \
             "iteration they stopped at (srun exit status $MVL_STATUS); not requeueing: resubmit to resume from the last" \
             "checkpoint, and see the ranks' errors above" >&2
        exit 1
    fi
    exit "$MVL_STATUS"
}

mvl_run_local_stage() {
    # One stage on this machine: torchrun --standalone with NPROC ranks. SIGUSR1 / SIGTERM to this script
    # (or to the launcher) reach every rank; they save and exit, and rerunning the command resumes.
    local stage="$1" nproc="$2"
    mvl_train_command "$stage"
    local temporary=""
    if [[ -z "${MVL_RUN_OUTCOME:-}" ]]; then
        temporary="$(mktemp -t mvl-outcome.XXXXXX)"
        MVL_RUN_OUTCOME="$temporary"
    fi
    export MVL_RUN_OUTCOME
    rm -f "$MVL_RUN_OUTCOME"
    trap 'echo "megatron-vl $stage: got a stop signal at $(mvl_now), asking ranks to save"; kill -USR1 "$launcher_pid" 2>/dev/null || true' USR1 TERM
    "$MVL_PYTHON" -m megatron_vl.runtime.launcher --standalone --nproc-per-node="$nproc" \
        --shutdown-timeout="$MVL_SHUTDOWN_TIMEOUT" "${MVL_CMD[@]}" &
    local launcher_pid=$!
    mvl_wait "$launcher_pid"
    mvl_report_outcome "$stage"
    [[ -n "$temporary" ]] && rm -f "$temporary"
    case "$MVL_OUTCOME_CODE" in
        0) echo "megatron-vl $stage: run the same command again to resume"; exit 0 ;;
        3) exit 0 ;;
    esac
    exit "$MVL_STATUS"
}
