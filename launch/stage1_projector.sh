#!/bin/bash
#SBATCH --job-name=mvl-stage1_projector
#SBATCH --nodes=8
#SBATCH --gpus-per-node=8
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --time=48:00:00
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
#
# Stage 1, projector warm-up: only the projector trains (LR 1e-3) on image-caption pairs, 8K sequences,
# 300B tokens for mimo_vl_7b. Starts from checkpoints_tools.from_hf output (ViT + LLM), or random weights for tiny.
#
#   sbatch launch/stage1_projector.sh                       # the mimo_vl_7b recipe; resumes by itself when requeued
#   MVL_MODEL=tiny sbatch --nodes=1 --gpus-per-node=2 launch/stage1_projector.sh
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
mvl_run_slurm_stage stage1_projector
