#!/bin/bash
#SBATCH --job-name=mvl-stage4_32k
#SBATCH --nodes=32
#SBATCH --gpus-per-node=8
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --time=48:00:00
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
#
# Stage 4, long context: everything trains (LR 2.5e-5) with long text, long documents, high-resolution
# images and long reasoning added, 32K sequences, 550B tokens. Starts from stage 3's last checkpoint.
#
#   sbatch launch/stage4_32k.sh                       # the mimo_vl_7b recipe; resumes by itself when requeued
#   MVL_MODEL=tiny sbatch --nodes=1 --gpus-per-node=2 launch/stage4_32k.sh
#
# Paths and settings come from environment variables: see launch/common.sh. SLURM sends USR1 ten
# minutes before the time limit; every rank saves a checkpoint and the job requeues itself.

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    # sbatch runs a spooled copy of this file: find the original to locate common.sh.
    script="$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -n 1)"
else
    script="$0"
fi
source "$(dirname "$script")/common.sh"
mvl_run_slurm_stage stage4_32k
