# Shared by the stage scripts (sourced, not run). Everything a stage needs comes from environment
# variables with the defaults below; override them with `export` or `sbatch --export=ALL,VAR=...`.
#
#   MVL_MODEL            model preset: mimo_vl_7b (default) or tiny
#   MVL_DATA_ROOT        root of the packed datasets the recipes name          (default /data/megatron-vl)
#   MVL_CHECKPOINT_ROOT  root of all stages' checkpoints, one folder per stage (default /checkpoints/megatron-vl)
#   MVL_TOKENIZER        tokenizer.json / .model / its directory               (default $MVL_DATA_ROOT/tokenizer)
#   MVL_LOG_ROOT         TensorBoard and metrics                               (default $MVL_CHECKPOINT_ROOT/logs)
#   MVL_GPUS_PER_NODE    processes per node   (default: SLURM's GPUs on the node, else 8)
#   MVL_MASTER_PORT      rendezvous port      (default: derived from the job id)
#   MVL_SHUTDOWN_TIMEOUT seconds torchrun waits for ranks to save after a signal (default 600)
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

mvl_run_slurm_stage() {
    # One stage under sbatch: one torchrun per node (srun), rendezvous on the first node of the job,
    # SLURM's warning signal relayed to every rank (they save and exit), then a requeue so the
    # next allocation resumes from that checkpoint.
    local stage="$1"
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
        echo "launch/$stage: not inside a SLURM job; submit with sbatch, or run launch/local.sh $stage" >&2
        exit 2
    fi
    local nodes="${SLURM_JOB_NUM_NODES:-1}"
    local gpus="${MVL_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
    local master
    master="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    local port="${MVL_MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"
    mvl_train_command "$stage"
    echo "megatron-vl $stage: job $SLURM_JOB_ID, $nodes node(s) x $gpus rank(s), rendezvous $master:$port"

    local interrupted=0
    trap 'interrupted=1; echo "megatron-vl $stage: got the warning signal, asking ranks to save"; kill -USR1 "$srun_pid" 2>/dev/null || true' USR1 TERM
    srun --kill-on-bad-exit=1 --ntasks-per-node=1 --nodes="$nodes" \
        "$MVL_PYTHON" -m torch.distributed.run \
        --nnodes="$nodes" --nproc-per-node="$gpus" \
        --rdzv-backend=c10d --rdzv-endpoint="$master:$port" --rdzv-id="$SLURM_JOB_ID" \
        --signals-to-handle=SIGTERM,SIGINT,SIGUSR1 --shutdown-timeout="$MVL_SHUTDOWN_TIMEOUT" \
        "${MVL_CMD[@]}" &
    local srun_pid=$!
    local status=0
    # `wait` returns early when a trapped signal arrives: keep waiting for srun itself.
    while true; do
        wait "$srun_pid" && status=0 || status=$?
        kill -0 "$srun_pid" 2>/dev/null || break
    done
    if (( interrupted )); then
        echo "megatron-vl $stage: saved after the signal; requeueing job $SLURM_JOB_ID to resume"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    exit "$status"
}
