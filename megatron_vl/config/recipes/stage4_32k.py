"""Stage 4, long context: everything trains at LR 2.5e-5 on 32K sequences, the stage 3 blend plus long
documents, long text, high-resolution images and long reasoning (the ``long`` packed dataset) and long
videos (``video_long``: minutes of video sampled at 2 fps, as the MiMo-VL report's stage 4 extends videos).

``mimo_vl_7b``: 32K sequences, 550B tokens, global batch 64 (2M tokens a step, as in stages 1-3), from stage 3;
TP=4 with sequence parallelism and CP=2 (each rank holds 16K tokens of a row), no activation recompute, no
pipeline: on launch/stage4_32k.sh's 256 GPUs that is DP=32, two micro-batches per rank per step. It is the
fastest layout within 80 GiB that ``python -m benchmarks.long_context_plan`` finds (the plan's step time at its
assumed 40% MFU: 1.47 s against 1.94 s for the TP=4 + full recompute this stage used before CP, which spends a
third more compute every step). Between layouts of equal estimate it takes the fewest CP ranks, whose key/value
exchange the estimate does not count; TP=8 cannot split the ViT (ffn 3420), and PP would only add a bubble.
Memory (``train --dry-run``'s plan, bf16): 3.9 GiB parameters, 7.7 GiB fp32 gradients, 0.4 GiB optimizer state
(over DP x CP = 64), 39.2 GiB activations (36 layers of 16K tokens, the fp32 logits, a micro-batch's share of the
ViT at 32K image tokens): 51.1 GiB per GPU. The packed datasets need room to pad every document to 2 x CP = 4
tokens: ``pack --seq-len 32768 --document-alignment 4`` (or a multiple; 16 serves CP up to 8).

128K: the same recipe with ``--set seq_len=131072 --set global_batch_size=16 --set parallel.context_parallel=8``
(2M tokens a step, TP=4 x CP=8, DP=8 on 256 GPUs, no recompute: 51.1 GiB per GPU, 3.27 s a step estimated),
on datasets packed with ``pack --seq-len 131072 --document-alignment 16``.
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
        parallel=ParallelConfig(tensor_parallel=4, context_parallel=2, sequence_parallel=True),
        schedule=LRSchedule(warmup_fraction=0.01),
        checkpoint=CheckpointSettings(save_every=500, keep_last=3), eval=EvalSettings(every=1000, samples=256),
    )
