#!/bin/bash
#SBATCH --job-name=mvl-stage2_vit
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
# Stage 2, vision-language alignment: the ViT (LR 1e-5) and the projector (1e-4) train, the LLM is frozen;
# captions + interleaved documents, 8K sequences, 167B tokens. Starts from stage 1's last checkpoint.
#
#   sbatch launch/stage2_vit.sh                       # the mimo_vl_7b recipe; resumes by itself when requeued
#   MVL_MODEL=tiny sbatch --nodes=1 --gpus-per-node=2 launch/stage2_vit.sh
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
mvl_run_slurm_stage stage2_vit
