#!/bin/bash
#SBATCH --job-name=mvl-stage3_multimodal
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
# Stage 3, multimodal pre-training: everything trains (LR 1e-5) on captions, interleaved, text, OCR,
# grounding, QA and reasoning, 8K sequences, 1.4T tokens. Starts from stage 2's last checkpoint.
#
#   sbatch launch/stage3_multimodal.sh                       # the mimo_vl_7b recipe; resumes by itself when requeued
#   MVL_MODEL=tiny sbatch --nodes=1 --gpus-per-node=2 launch/stage3_multimodal.sh
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
mvl_run_slurm_stage stage3_multimodal
