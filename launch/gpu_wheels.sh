#!/bin/bash
# Download the wheels launch/gpu_check.sh installs on a GPU machine that has no package index.
#
#   bash launch/gpu_wheels.sh [DIR]             (default DIR: gpu_wheels)
#
# Run it where pip reaches PyPI. It fetches, for Python 3.12 on x86-64 Linux, megatron-core and transformers at the
# versions CI tests (.ci/constraints.txt): about 15 MB, what a machine with torch, CUDA and the usual Python packages
# lacks. Transformer Engine is not among them: its CUDA core wheel alone is 276 MB (more than such a machine accepts
# with the repository), and its torch extension has no wheel (pip builds it from source, against a torch it would
# also have to fetch). Where TE is wanted, run the check in the NGC PyTorch container, which has it.
# MVL_GPU_PYTHON_VERSION (default 3.12), MVL_PYTHON.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${MVL_PYTHON:-python3}"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
fi
if [[ "${1:-}" == -* ]]; then
    echo "gpu_wheels.sh: unknown option $1 (see --help)" >&2
    exit 2
fi
DIR="${1:-gpu_wheels}"
PYTHON_VERSION="${MVL_GPU_PYTHON_VERSION:-3.12}"
mkdir -p "$DIR"
pinned() { grep -E "^$1==" "$REPO/.ci/constraints.txt" | head -1; }
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR" "$(pinned megatron-core)" "$(pinned transformers)"
echo "wheels for Python $PYTHON_VERSION in $DIR ($(du -sh "$DIR" | cut -f1)):"
ls -1 "$DIR"
