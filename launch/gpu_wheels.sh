#!/bin/bash
# Download the wheels launch/gpu_check.sh installs on a GPU machine that has no package index.
#
#   bash launch/gpu_wheels.sh [DIR] [--with-transformer-engine]      (default DIR: gpu_wheels)
#
# Run it where pip reaches PyPI. It fetches, for Python 3.12 on x86-64 Linux, megatron-core and transformers at
# the versions CI tests (.ci/constraints.txt): about 15 MB, what a machine with torch, CUDA and the usual Python
# packages lacks. --with-transformer-engine adds Transformer Engine 2.x for CUDA 13 (its prebuilt core, about
# 265 MB, and the source of its torch extension, which gpu_check.sh builds there against the local torch).
# MVL_GPU_PYTHON_VERSION (default 3.12), MVL_TRANSFORMER_ENGINE_VERSION (default 2.20.2), MVL_PYTHON.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${MVL_PYTHON:-python3}"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
DIR="gpu_wheels"
WITH_TE=0
for arg in "$@"; do
    case "$arg" in
        --with-transformer-engine) WITH_TE=1 ;;
        -*) echo "gpu_wheels.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) DIR="$arg" ;;
    esac
done
PYTHON_VERSION="${MVL_GPU_PYTHON_VERSION:-3.12}"
TE_VERSION="${MVL_TRANSFORMER_ENGINE_VERSION:-2.20.2}"
mkdir -p "$DIR"
pinned() { grep -E "^$1==" "$REPO/.ci/constraints.txt" | head -1; }
binary=(--no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 -d "$DIR")
"$PY" -m pip download --quiet "${binary[@]}" "$(pinned megatron-core)" "$(pinned transformers)"
if (( WITH_TE )); then
    "$PY" -m pip download --quiet "${binary[@]}" "transformer_engine==$TE_VERSION" "transformer_engine_cu13==$TE_VERSION"
    "$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$DIR" "transformer_engine_torch==$TE_VERSION"
fi
echo "wheels for Python $PYTHON_VERSION in $DIR ($(du -sh "$DIR" | cut -f1)):"
ls -1 "$DIR"
