#!/bin/bash
# Prove the GPU path on one GPU in one command, in at most 8 minutes with its installs:
#
#   bash launch/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu_check_out)
#
#   1. packages: what the machine lacks (megatron-core, and transformers at CI's version) is installed from the
#      wheel folder launch/gpu_wheels.sh makes, into a scratch folder; the machine's torch and packages stay;
#   2. Transformer Engine: used where it imports (the NGC container). It cannot be brought to a machine that lacks
#      it (its CUDA core wheel alone is 276 MB, its torch extension compiles for minutes against the local torch),
#      so there the local layers run on the GPU and the report's first line says "TE not tested";
#   3. tests/gpu in three pytest parts, side by side on a GPU, each with a time budget; a part that runs out is stopped with
#      SIGINT, so the tests it finished are still reported and the others show as not run:
#        layers  TE vs local layers, packed documents vs one by one, the HF export vs transformers, one layer of
#                each tower at the 7B's widths vs transformers (fp32, bf16), TE's CP=2 vs local CP=1 (bf16; skipped
#                with its reason below 2 GPUs), the video processor;
#        resume  the distributed optimizer: kill -9, resume, losses bit for bit;
#        stages  the four tiny stages one after the other, each from the last one's checkpoint, learning;
#   4. throughput of the 7B shape (4 LLM layers, the whole ViT) at 8K and 32K packed tokens, bf16;
#   5. the report, in OUT_DIR (7 files, no folders): gpu_check.md (the table it prints, the verdict on its first
#      line), gpu_check.json, gpu_tests.xml (JUnit), gpu_tests.log, throughput.json, throughput.log, packages.log.
#
# Exits 0 when the report says PASS (a test passed, none failed or was left unrun, the benchmark measured every
# length), 1 when it says FAIL, 2 when the packages could not be set up. Budgets in seconds, 8 minutes in all:
# MVL_GPU_PACKAGE_SECONDS (60), MVL_GPU_LAYER_TEST_SECONDS (150), MVL_GPU_RESUME_TEST_SECONDS (200),
# MVL_GPU_STAGE_TEST_SECONDS (220), MVL_GPU_BENCHMARK_SECONDS (150). Also: MVL_GPU_WHEELS (default ./gpu_wheels),
# MVL_GPU_SCRATCH (default: a new folder under $TMPDIR), MVL_GPU_BENCHMARK_ARGS (more benchmark options),
# MVL_PYTHON (default python3). MVL_GPU_TESTS_DEVICE=cpu rehearses every step on the CPU with launch/gpu_rehearsal
# first on PYTHONPATH, so that what the GPU machine lacks cannot be imported here either; its figures say nothing
# about a GPU.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
fi
OUT="$(mkdir -p "${1:-gpu_check_out}" && cd "${1:-gpu_check_out}" && pwd)"
PY="${MVL_PYTHON:-python3}"
WHEELS="${MVL_GPU_WHEELS:-$REPO/gpu_wheels}"
SCRATCH="${MVL_GPU_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/mvl_gpu_check.XXXXXX")}"
DEVICE="${MVL_GPU_TESTS_DEVICE:-cuda}"
REPORT_FILES=(gpu_check.md gpu_check.json gpu_tests.xml gpu_tests.log throughput.json throughput.log packages.log)
mkdir -p "$SCRATCH/site"
for file in "${REPORT_FILES[@]}"; do rm -f "$OUT/$file"; done
started=$(date +%s)
cd "$REPO"
step() { echo; echo "== $* ($(( $(date +%s) - started )) s)"; }
export PYTHONPATH="$SCRATCH/site:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
rehearsal=()
if [[ "$DEVICE" == cpu ]]; then
    export PYTHONPATH="$REPO/launch/gpu_rehearsal:$PYTHONPATH"
    rehearsal=(--rehearsal)
fi
echo "gpu_check.sh: results in $OUT, scratch in $SCRATCH"

step "1/5 packages"
if [[ "$DEVICE" == cuda ]]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" || exit 2
else
    "$PY" -c "import sitecustomize as s; print('rehearsal on the CPU; not importable, as on the GPU machine:', ', '.join(s.ABSENT_ON_THE_GPU_MACHINE))"
fi
wheels=()
"$PY" -c "import megatron.core" 2>/dev/null || wheels+=("$WHEELS"/megatron_core-*.whl)
[[ -n "$(ls "$WHEELS"/transformers-*.whl 2>/dev/null)" ]] && wheels+=("$WHEELS"/transformers-*.whl)
if (( ${#wheels[@]} )); then
    for wheel in "${wheels[@]}"; do
        [[ -f "$wheel" ]] || { echo "gpu_check.sh: $wheel is missing: run launch/gpu_wheels.sh where pip reaches PyPI and bring its folder (MVL_GPU_WHEELS)" >&2; exit 2; }
    done
    timeout "${MVL_GPU_PACKAGE_SECONDS:-60}" "$PY" -m pip install --no-index --no-deps --no-compile --target "$SCRATCH/site" \
        "${wheels[@]}" >>"$OUT/packages.log" 2>&1 \
        || { echo "gpu_check.sh: installing ${wheels[*]} failed (packages.log)" >&2; exit 2; }
fi
"$PY" -c "import megatron.core, transformers; print('megatron-core', megatron.core.__version__, '| transformers', transformers.__version__)" \
    2>>"$OUT/packages.log" || { echo "gpu_check.sh: megatron-core or transformers does not import (packages.log)" >&2; exit 2; }

step "2/5 Transformer Engine"
if [[ "$DEVICE" == cpu ]]; then
    te_status="absent: the rehearsal runs on the CPU"
else
    te_error="$("$PY" -c "from megatron_vl.runtime.platform import transformer_engine_error as e; print(e() or '')" 2>>"$OUT/packages.log")"
    te_status="${te_error:+absent: $te_error}"
    te_status="${te_status:-present}"
fi
echo "Transformer Engine: $te_status"
[[ "$te_status" == present ]] || export MVL_LAYER_BACKEND=local

step "3/5 tests/gpu in three parts"
# Side by side on a GPU machine (16 cores; the tiny runs beside the layer tests); one after another in a rehearsal,
# whose 2 cores cannot run three parts within their budgets at once.
part() { bash "$REPO/launch/gpu_check_part.sh" "$1" "$2" "$SCRATCH" "${@:3}"; }
start_part() { if [[ "$DEVICE" == cpu ]]; then part "$@"; else part "$@" & fi; }
PARTS=(layers resume stages)
start_part layers "${MVL_GPU_LAYER_TEST_SECONDS:-150}" tests/gpu/test_layer_backends.py tests/gpu/test_7b_widths.py \
    tests/gpu/test_context_parallel.py tests/data/test_videos.py
start_part resume "${MVL_GPU_RESUME_TEST_SECONDS:-200}" tests/gpu/test_resume.py
start_part stages "${MVL_GPU_STAGE_TEST_SECONDS:-220}" tests/gpu/test_stages.py
wait
: >"$SCRATCH/parts.tsv"
for name in "${PARTS[@]}"; do
    cat "$SCRATCH/$name.part" >>"$SCRATCH/parts.tsv" 2>/dev/null
    { echo "===== part $name"; cat "$SCRATCH/$name.log"; } >>"$OUT/gpu_tests.log" 2>/dev/null
done

step "4/5 throughput of the 7B shape"
timeout -s INT -k 20 "${MVL_GPU_BENCHMARK_SECONDS:-150}" "$PY" -m benchmarks.gpu_throughput --json "$OUT/throughput.json" \
    ${MVL_GPU_BENCHMARK_ARGS:-} >"$OUT/throughput.log" 2>&1
echo "benchmark exited $?: $(tail -n 1 "$OUT/throughput.log")"

step "5/5 report: $OUT/gpu_check.md"
"$PY" -m benchmarks.gpu_check_report --scratch "$SCRATCH" --out "$OUT" --transformer-engine "$te_status" \
    --seconds "$(( $(date +%s) - started ))" "${rehearsal[@]}"
