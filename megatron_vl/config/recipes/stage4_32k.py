"""Stage 4, long context: everything trains at LR 2.5e-5 on 32K sequences, the stage 3 blend plus long
documents, long text, high-resolution images and long reasoning (the ``long`` packed dataset) and long
videos (``video_long``: minutes of video sampled at 2 fps, as the MiMo-VL report's stage 4 extends videos).

``mimo_vl_7b``: 32K sequences, 550B tokens, global batch 64 (2M tokens a step, as in stages 1-3), from stage 3;
TP=4 with sequence parallelism and full activation recompute, no pipeline: on launch/stage4_32k.sh's 256 GPUs
that is DP=64, one micro-batch per rank per step and no pipeline bubble. The layout it replaces, PP=2 at
TP=4, left DP=32 ranks 2 micro-batches each: a third of every step idle in the bubble. TP=8 cannot split the
ViT (ffn 3420), fewer DP ranks at PP=2 (16 nodes: 4 micro-batches) still idle 20%, and a larger global batch
would depart from the report's 2M tokens a step. Memory (``train --dry-run``'s plan, bf16): 3.9 GiB
parameters, 7.7 GiB fp32 gradients, 0.4 GiB optimizer state (over DP=64), 11.5 GiB activations (36 + 32
layer inputs kept, one layer recomputed, the fp32 logits, a micro-batch of 32K image tokens through the ViT):
23.5 GiB per GPU; without recompute the activations alone would be 78 GiB.
``tiny``: 2048-token sequences, 10 steps of 8 sequences at PP=2 on 2 CPU ranks (the first stage holds the ViT,
the projector and 1 of the 4 LLM layers), from stage 3; LR 1e-4 for all (raised from 2.5e-5 like the other tiny
stages, but kept below stage 3's 1e-3: at 5e-4 ten steps of long documents undid a third of what stage 3 taught
about captions).
"""

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import BlendComponent, StageRecipe
from megatron_vl.config.training import (
    CheckpointSettings,
    EvalSettings,
    LoggingSettings,
    LRSchedule,
    RecomputeSettings,
    TrainedModules,
)

# Shares of the sequences (the report gives none): the long data keeps its 30%, 8 points of it now long videos;
# the image and text kinds give 10 of their 70 points to short video (6%) and GUI (4%), about stage 3's ratio.
BLEND = (
    BlendComponent(kind="caption", weight=0.08),
    BlendComponent(kind="interleaved", weight=0.17),
    BlendComponent(kind="text", weight=0.13),
    BlendComponent(kind="ocr", weight=0.09),
    BlendComponent(kind="grounding", weight=0.05),
    BlendComponent(kind="cot", weight=0.08),
    BlendComponent(kind="video_caption", weight=0.04),
    BlendComponent(kind="video_grounding", weight=0.02),
    BlendComponent(kind="gui", weight=0.04),
    BlendComponent(kind="video_long", weight=0.08),
    BlendComponent(kind="long", weight=0.22),
)


def recipe(model: str) -> StageRecipe:
    if model == "tiny":
        return StageRecipe(
            name="stage4_32k", model="tiny", trains=TrainedModules(vision_lr=1e-4, projector_lr=1e-4, language_lr=1e-4),
            blend=BLEND, seq_len=2048, global_batch_size=8, train_tokens=10 * 8 * 2048, init_from="stage3_multimodal",
            parallel=ParallelConfig(pipeline_parallel=2, first_pipeline_stage_language_layers=1),
            schedule=LRSchedule(warmup_fraction=0.1), recompute=RecomputeSettings(enabled=True),
            checkpoint=CheckpointSettings(save_every=5, keep_last=2),
            logging=LoggingSettings(log_every=5), eval=EvalSettings(every=5, samples=4), num_workers=1,
        )
    return StageRecipe(
        name="stage4_32k", model="mimo_vl_7b", trains=TrainedModules(vision_lr=2.5e-5, projector_lr=2.5e-5, language_lr=2.5e-5),
        blend=BLEND, seq_len=32768, global_batch_size=64, train_tokens=550 * 10**9, init_from="stage3_multimodal",
        parallel=ParallelConfig(tensor_parallel=4, sequence_parallel=True),
        schedule=LRSchedule(warmup_fraction=0.01),
        recompute=RecomputeSettings(enabled=True, method="uniform", num_layers=1),
        checkpoint=CheckpointSettings(save_every=500, keep_last=3), eval=EvalSettings(every=1000, samples=256),
    )
