#!/bin/bash
# Prove the GPU path on one GPU in one command (under 8 minutes on an H200):
#
#   bash launch/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu_check_out)
#
#   1. installs what the machine lacks (megatron-core, transformers at CI's version) from a folder of wheels
#      made by launch/gpu_wheels.sh, into OUT_DIR/site: the machine's torch and packages stay as they are;
#   2. Transformer Engine: used if it imports; else installed from the wheel folder in a time-boxed step; if that
#      fails, the local layers run on the GPU and the Transformer Engine tests are reported as not run;
#   3. runs tests/gpu (pytest marker gpu): TE vs local layers, packed vs one by one, the HF export vs transformers,
#      the distributed optimizer's save and bit-for-bit resume, the four tiny stages one after the other; and
#      tests/data/test_videos.py, whose comparison with transformers' video processor needs torchvision;
#   4. runs benchmarks/gpu_throughput.py: tokens/s/GPU, MFU and peak memory of the 7B shape (4 LLM layers, the
#      whole ViT) at 8K and 32K packed tokens, bf16, recompute as the recipes set it;
#   5. writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (the table it also prints).
#
# Exits 0 when every test passed (or was skipped for a missing TE) and the benchmark ran. Environment:
# MVL_GPU_WHEELS (default ./gpu_wheels), MVL_TE_INSTALL_SECONDS (default 90), MVL_GPU_TEST_SECONDS (default 270),
# MVL_GPU_BENCHMARK_SECONDS (default 120), MVL_GPU_BENCHMARK_ARGS (more benchmark options), MVL_PYTHON (default
# python3). MVL_GPU_TESTS_DEVICE=cpu runs the same steps on the CPU, to check the script itself where no GPU is.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
fi
OUT="$(mkdir -p "${1:-gpu_check_out}" && cd "${1:-gpu_check_out}" && pwd)"
PY="${MVL_PYTHON:-python3}"
WHEELS="${MVL_GPU_WHEELS:-$REPO/gpu_wheels}"
SITE="$OUT/site"
started=$(date +%s)
cd "$REPO"
step() { echo; echo "== $* ($(( $(date +%s) - started )) s)"; }
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

step "1/5 packages"
if [[ "${MVL_GPU_TESTS_DEVICE:-cuda}" == cuda ]]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" || exit 2
fi
wheels=()
"$PY" -c "import megatron.core" 2>/dev/null || wheels+=("$WHEELS"/megatron_core-*.whl)
[[ -n "$(ls "$WHEELS"/transformers-*.whl 2>/dev/null)" ]] && wheels+=("$WHEELS"/transformers-*.whl)
if (( ${#wheels[@]} )); then
    for wheel in "${wheels[@]}"; do
        [[ -f "$wheel" ]] || { echo "gpu_check.sh: $wheel is missing: run launch/gpu_wheels.sh where pip reaches PyPI and bring its folder (MVL_GPU_WHEELS)" >&2; exit 2; }
    done
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "${wheels[@]}" || exit 2
fi
"$PY" -c "import megatron.core, transformers; print('megatron-core', megatron.core.__version__, '| transformers', transformers.__version__)" || exit 2

step "2/5 Transformer Engine"
te_imports() { "$PY" -c "import transformer_engine.pytorch, megatron.core.extensions.transformer_engine" >>"$OUT/te.log" 2>&1; }
if te_imports; then
    te_status="present"
elif [[ -n "$(ls "$WHEELS"/transformer_engine* 2>/dev/null)" ]]; then
    if timeout "${MVL_TE_INSTALL_SECONDS:-90}" "$PY" -m pip install --no-index --find-links "$WHEELS" --no-build-isolation \
            --target "$SITE" "transformer_engine[pytorch]" >>"$OUT/te.log" 2>&1 && te_imports; then
        te_status="installed from $WHEELS"
    else
        te_status="not run: installing it from $WHEELS failed or ran out of its ${MVL_TE_INSTALL_SECONDS:-90} s (te.log)"
    fi
else
    te_status="not run: it does not import and $WHEELS holds no transformer_engine wheels (launch/gpu_wheels.sh --with-transformer-engine)"
fi
echo "Transformer Engine: $te_status"
[[ "$te_status" == not\ run* ]] && export MVL_LAYER_BACKEND=local

step "3/5 tests/gpu"
timeout "${MVL_GPU_TEST_SECONDS:-270}" "$PY" -m pytest tests/gpu tests/data/test_videos.py -p no:cacheprovider -o addopts="-q -ra --timeout=240" \
    --junitxml "$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" | tail -25

step "4/5 throughput of the 7B shape"
timeout "${MVL_GPU_BENCHMARK_SECONDS:-120}" "$PY" -m benchmarks.gpu_throughput --json "$OUT/throughput.json" \
    ${MVL_GPU_BENCHMARK_ARGS:-} 2>&1 \
    | tee "$OUT/throughput.log" | tail -8

step "5/5 report: $OUT/gpu_check.json, $OUT/gpu_check.md"
"$PY" -m benchmarks.gpu_check_report --out "$OUT" --transformer-engine "$te_status" --seconds "$(( $(date +%s) - started ))"
