#!/bin/bash
# Run one curriculum stage on this machine, without SLURM: torchrun --standalone with N ranks.
#
#   bash launch/local.sh STAGE [NPROC]        e.g. MVL_MODEL=tiny bash launch/local.sh stage1_projector 2
#
# STAGE is stage1_projector, stage2_vit, stage3_multimodal or stage4_32k. NPROC defaults to the
# GPUs on this machine (or 2 without a GPU). Paths and settings: see launch/common.sh. SIGUSR1 or
# SIGTERM to this script (or to torchrun) make the ranks save and exit; it exits 0 once rank 0
# confirmed that checkpoint, and the same command resumes.
source "$(dirname "$0")/common.sh"
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ? 2 : 0 ))
fi
stage="$1"
nproc="${2:-$("$MVL_PYTHON" -c 'import torch; print(torch.cuda.device_count() or 2)')}"
mvl_run_local_stage "$stage" "$nproc"
