#!/bin/bash
# The whole pipeline on this machine, on CPU, from nothing to a Hugging Face model that generates:
#
#   bash launch/demo.sh [OUT_DIR]          (default OUT_DIR: demo_out; 9m32s on 2 cores)
#
#   1. draw a demo corpus of every data kind (pictures, videos, GUI screens, text), train a tokenizer,
#      ingest (videos sampled at 2 fps, frames of 56x56 to 112x112 pixels), pack at 1024 and 2048 tokens
#   2. the LLM's text-only warm-up (stage 0: tiny's LLM starts random, MiMo-VL's is pretrained), then the four
#      curriculum stages of the `tiny` model on 2 ranks (launch/local.sh; TP=2, DP=2 or PP=2 per recipe); each
#      stage's last checkpoint is scored on held-out drawn pictures (captions: CIDEr-D, grounding: IoU@0.5)
#   3. convert the last checkpoint to a Hugging Face Qwen2.5-VL folder and verify its logits
#   4. the scores per stage beside the chance level; transformers captions a held-out picture; the loss curves
#      and the scores go to OUT_DIR/losses.png
#
# Installs the package first when it is missing (the CPU build of torch, then this repository).
# Environment: MVL_DEMO_SAMPLES (documents per kind, default 500), MVL_DEMO_SCORED_SAMPLES (caption and
# grounding documents, the kinds the stages are scored on, default 4000), MVL_DEMO_STEPS_SCALE (multiplies
# stage 3's steps, where the model learns to read pictures; default 1, and 4 is the longer mode, about 22 minutes,
# in which grounding learns too: README "The demo's scores"), MVL_PYTHON (default python3).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-demo_out}" && cd "${1:-demo_out}" && pwd)"
PY="${MVL_PYTHON:-python3}"
SAMPLES="${MVL_DEMO_SAMPLES:-500}"
SCORED_SAMPLES="${MVL_DEMO_SCORED_SAMPLES:-4000}"
SCALE="${MVL_DEMO_STEPS_SCALE:-1}"
cd "$REPO"

if ! "$PY" -c "import megatron_vl, megatron.core, transformers" 2>/dev/null; then
    echo "== installing megatron-vl (CPU build of torch first)"
    "$PY" -m pip install --quiet torch==2.13.0
    "$PY" -m pip install --quiet -c .ci/constraints.txt -e .
fi

export MVL_MODEL=tiny MVL_DATA_ROOT="$OUT/data" MVL_CHECKPOINT_ROOT="$OUT/checkpoints" MVL_LOG_ROOT="$OUT/logs"
export MVL_TOKENIZER="$OUT/data/tokenizer"
STAGES=(stage0_language stage1_projector stage2_vit stage3_multimodal stage4_32k)
# The packed datasets the stages blend (DATA_ROOT/packed/<seq_len>/<kind>), stage 4's long ones at 2048 tokens.
KINDS=(caption interleaved ocr grounding cot text video_caption video_grounding gui)
LONG_KINDS=(long video_long)
sources() {  # sources KIND: the demo-corpus files (raw/<split>/<file>.jsonl) KIND is packed from
    case "$1" in
        video_caption) echo video_caption interleaved_video ;;  # videos join in stage 3, with the video kinds
        long) echo interleaved_long cot_long ;;
        video_long) echo video_caption_long ;;
        *) echo "$1" ;;
    esac
}
shards() {  # shards SPLIT KIND...: the sample-shard folders the KINDs are packed from, one a line
    local split="$1" kind file
    shift
    for kind in "$@"; do
        for file in $(sources "$kind"); do echo "$OUT/shards/$split/$file"; done
    done
}
# Small video frames for the tiny model: 56x56 to 112x112 pixels, 4 to 16 tokens per pair of frames.
VIDEO_ARGS=(--video-fps 2 --video-min-pixels 3136 --video-max-pixels 12544)
step() { echo; echo "== $*"; }
# two_at_a_time COMMAND...: runs the (shell-quoted) commands two at a time, one a core (most of an ingest or pack of
# the small demo files is Python starting), prints each one's output whole when it ends, fails when any failed.
two_at_a_time() {
    printf '%s\0' "$@" | xargs -0 -P 2 -n 1 bash -c 'output="$(eval "$1" 2>&1)"; status=$?; echo "$output"; exit $status' _
}

step "1/4 data: demo corpus -> tokenizer -> sample shards -> packed shards under $OUT/data"
"$PY" -m data_prep demo-corpus --out "$OUT/raw/train" --seed 0 --samples-per-kind "$SAMPLES" --workers 2 \
    --caption-and-grounding-samples "$SCORED_SAMPLES"
"$PY" -m data_prep demo-corpus --out "$OUT/raw/eval" --seed 1 --samples-per-kind 40 --long-samples 0 \
    --language-samples 0 --benchmark-files
"$PY" -m data_prep train-tokenizer --input "$OUT/raw/train" --vocab-size 4096 --out "$MVL_TOKENIZER"
commands=()
for split in train eval; do
    kinds=("${KINDS[@]}")
    [[ "$split" == train ]] && kinds+=("${LONG_KINDS[@]}")
    mapfile -t folders < <(shards "$split" "${kinds[@]}")
    for folder in "${folders[@]}"; do
        commands+=("$(printf '%q ' "$PY" -m data_prep ingest --input "$OUT/raw/$split/$(basename "$folder").jsonl" \
            --out "$folder" "${VIDEO_ARGS[@]}" --overwrite)")
    done
done
commands+=("$(printf '%q ' "$PY" -m data_prep ingest --input "$OUT/raw/train/language.jsonl" \
    --out "$OUT/shards/train/language" --overwrite)")
two_at_a_time "${commands[@]}"
commands=()
pack() {  # pack SEQ_LEN OUT_NAME SHARD_FOLDER...: the command that packs the folders into packed/SEQ_LEN/OUT_NAME
    local seq_len="$1" name="$2"
    shift 2
    printf '%q ' "$PY" -m data_prep pack --input "$@" --tokenizer "$MVL_TOKENIZER" \
        --out "$MVL_DATA_ROOT/packed/$seq_len/$name" --seq-len "$seq_len"
}
for seq_len in 1024 2048; do
    for kind in "${KINDS[@]}"; do
        mapfile -t inputs < <(shards train "$kind")
        commands+=("$(pack "$seq_len" "$kind" "${inputs[@]}")")
    done
    mapfile -t inputs < <(shards eval "${KINDS[@]}")
    commands+=("$(pack "$seq_len" eval "${inputs[@]}")")
done
for kind in "${LONG_KINDS[@]}"; do
    mapfile -t inputs < <(shards train "$kind")
    commands+=("$(pack 2048 "$kind" "${inputs[@]}") && $(printf '%q ' "$PY" -m data_prep verify "$MVL_DATA_ROOT/packed/2048/$kind")")
done
commands+=("$(pack 1024 language "$OUT/shards/train/language")")
two_at_a_time "${commands[@]}"

step "2/4 training: the text warm-up and the four curriculum stages of tiny on 2 CPU ranks"
# Each stage's last checkpoint answers the held-out pictures as a pre-training document reads: the picture, then
# nothing (a caption follows) or the grounding query and a new line (the boxes follow): at the end of each stage
# (every=10^6), and every 240 steps of stage 3 (the longer mode's climb).
BENCHMARKS="$OUT/raw/eval/benchmarks"
BENCHMARK_ARGS="--set benchmarks.files=[\"$BENCHMARKS/captions.jsonl\",\"$BENCHMARKS/grounding.jsonl\"]
    --set benchmarks.chat=false --set benchmarks.caption_prompt=\"\" --set benchmarks.grounding_prompt=\"{query}\\n\"
    --set benchmarks.batch_size=20 --set benchmarks.every=1000000"
for stage in "${STAGES[@]}"; do
    stage_args=""
    if [[ "$stage" == stage3_multimodal ]]; then
        stage_args="--set benchmarks.every=240"
        if [[ "$SCALE" != 1 ]]; then
            tokens="$("$PY" -m megatron_vl.training.train --recipe "$stage" --model tiny --dry-run \
                | "$PY" -c "import json, sys; print(int(json.load(sys.stdin)['recipe']['train_tokens'] * $SCALE))")"
            stage_args+=" --set train_tokens=$tokens"
        fi
    fi
    MVL_TRAIN_ARGS="$BENCHMARK_ARGS $stage_args" bash launch/local.sh "$stage" 2
done

step "3/4 conversion: the last checkpoint -> Hugging Face folder $OUT/hf, verified against transformers"
"$PY" -m checkpoints_tools.to_hf --ckpt "$MVL_CHECKPOINT_ROOT/stage4_32k" --out "$OUT/hf"
"$PY" -m checkpoints_tools.verify --ckpt "$MVL_CHECKPOINT_ROOT/stage4_32k" --hf "$OUT/hf"

step "4/4 scores per stage on held-out pictures, beside chance (each picture answered with another's reference)"
"$PY" -m megatron_vl.training.loss_plot --log-root "$MVL_LOG_ROOT" --out "$OUT/losses.png"
"$PY" -m checkpoints_tools.evaluate --chance "$BENCHMARKS/captions.jsonl" "$BENCHMARKS/grounding.jsonl"
echo
read -r image caption < <("$PY" -c "import json, sys; d = json.loads(open(sys.argv[1]).readline()); print(d['image'], d['caption'])" "$OUT/raw/eval/caption.jsonl")
echo "picture $OUT/raw/eval/$image, drawn as: $caption"
"$PY" -m checkpoints_tools.generate --hf "$OUT/hf" --image "$OUT/raw/eval/$image" --no-chat --prompt "" --max-new-tokens 32
echo
echo "demo complete: data $MVL_DATA_ROOT, checkpoints $MVL_CHECKPOINT_ROOT, HF model $OUT/hf, losses $OUT/losses.png"
