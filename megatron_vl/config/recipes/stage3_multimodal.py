"""Stage 3, multimodal pre-training: everything trains at LR 1e-5, on the full blend (captions,
interleaved documents, text, OCR, grounding, QA and reasoning), which video and GUI data join here as
the MiMo-VL report's stage 3 adds them (video captions with event times, temporal grounding, GUI
grounding and actions).

``mimo_vl_7b``: 8K sequences, 1.4T tokens, global batch 256, from stage 2; TP=4 with sequence parallelism
(full training holds gradients and optimizer state for all 8.3B parameters). On launch/stage3_multimodal.sh's
256 GPUs: DP=64, 4 micro-batches per rank per step, no pipeline bubble; about 32 GiB per GPU.
``tiny``: 1024-token sequences, 240 steps of 8 sequences at DP=2 on 2 CPU ranks (PP=2 ran a third slower here:
its first stage holds the ViT beside an LLM layer; stage 4 shows the pipeline instead), from stage 2; LR 1e-3 for
all, raised from the 7B's 1e-5. This is where the tiny model learns to read pictures (its ViT and projector learn
little while its small LLM is frozen): its blend gives the captions and grounding the demo is scored on a larger
share (``TINY_BLEND``).
"""

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import BlendComponent, StageRecipe
from megatron_vl.config.training import CheckpointSettings, EvalSettings, LoggingSettings, LRSchedule, TrainedModules

# Shares of the sequences (the report gives none): video 10% (7% captions, 3% temporal grounding) and GUI 5%,
# taken from the image and text kinds, which keep 85% in about their former ratios.
BLEND = (
    BlendComponent(kind="caption", weight=0.12),
    BlendComponent(kind="interleaved", weight=0.22),
    BlendComponent(kind="text", weight=0.18),
    BlendComponent(kind="ocr", weight=0.12),
    BlendComponent(kind="grounding", weight=0.08),
    BlendComponent(kind="cot", weight=0.13),
    BlendComponent(kind="video_caption", weight=0.07),
    BlendComponent(kind="video_grounding", weight=0.03),
    BlendComponent(kind="gui", weight=0.05),
)


# The demo's held-out scores are captions and grounding: tiny sees more of them, every other kind still present.
TINY_BLEND = (
    BlendComponent(kind="caption", weight=0.3),
    BlendComponent(kind="interleaved", weight=0.06),
    BlendComponent(kind="text", weight=0.03),
    BlendComponent(kind="ocr", weight=0.03),
    BlendComponent(kind="grounding", weight=0.4),
    BlendComponent(kind="cot", weight=0.03),
    BlendComponent(kind="video_caption", weight=0.06),
    BlendComponent(kind="video_grounding", weight=0.03),
    BlendComponent(kind="gui", weight=0.06),
)


def recipe(model: str) -> StageRecipe:
    if model == "tiny":
        return StageRecipe(
            name="stage3_multimodal", model="tiny", trains=TrainedModules(vision_lr=1e-3, projector_lr=1e-3, language_lr=1e-3),
            blend=TINY_BLEND, seq_len=1024, global_batch_size=8, train_tokens=240 * 8 * 1024, init_from="stage2_vit",
            parallel=ParallelConfig(),
            schedule=LRSchedule(warmup_fraction=0.02), checkpoint=CheckpointSettings(save_every=40, keep_last=2),
            logging=LoggingSettings(log_every=10), eval=EvalSettings(every=40, samples=4), num_workers=1,
        )
    return StageRecipe(
        name="stage3_multimodal", model="mimo_vl_7b", trains=TrainedModules(vision_lr=1e-5, projector_lr=1e-5, language_lr=1e-5),
        blend=BLEND, seq_len=8192, global_batch_size=256, train_tokens=1400 * 10**9, init_from="stage2_vit",
        parallel=ParallelConfig(tensor_parallel=4, sequence_parallel=True), schedule=LRSchedule(warmup_fraction=0.01),
        checkpoint=CheckpointSettings(save_every=1000, keep_last=3), eval=EvalSettings(every=2000, samples=1024),
    )
