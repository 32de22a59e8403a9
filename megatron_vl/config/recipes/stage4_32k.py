"""Stage 4, long context: everything trains at LR 2.5e-5 on 32K sequences, the stage 3 blend plus long
documents, long text, high-resolution images and long reasoning (the ``long`` packed dataset).

``mimo_vl_7b``: 32K sequences, 550B tokens, global batch 64 (2M tokens a step), from stage 3; TP=4 with
sequence parallelism, PP=2 (16 of the 36 LLM layers beside the ViT on the first stage) and full
activation recompute.
``tiny``: 2048-token sequences, 10 steps of 8 sequences at TP=2 with sequence parallelism on 2 CPU ranks,
from stage 3; LR 5e-4 for all (raised from 2.5e-5 like the other tiny stages).
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

BLEND = (
    BlendComponent(kind="caption", weight=0.1),
    BlendComponent(kind="interleaved", weight=0.2),
    BlendComponent(kind="text", weight=0.15),
    BlendComponent(kind="ocr", weight=0.1),
    BlendComponent(kind="grounding", weight=0.05),
    BlendComponent(kind="cot", weight=0.1),
    BlendComponent(kind="long", weight=0.3),
)


def recipe(model: str) -> StageRecipe:
    if model == "tiny":
        return StageRecipe(
            name="stage4_32k", model="tiny", trains=TrainedModules(vision_lr=5e-4, projector_lr=5e-4, language_lr=5e-4),
            blend=BLEND, seq_len=2048, global_batch_size=8, train_tokens=10 * 8 * 2048, init_from="stage3_multimodal",
            parallel=ParallelConfig(tensor_parallel=2, sequence_parallel=True), schedule=LRSchedule(warmup_fraction=0.1),
            recompute=RecomputeSettings(enabled=True), checkpoint=CheckpointSettings(save_every=5, keep_last=2),
            logging=LoggingSettings(log_every=5), eval=EvalSettings(every=5, samples=4), num_workers=1,
        )
    return StageRecipe(
        name="stage4_32k", model="mimo_vl_7b", trains=TrainedModules(vision_lr=2.5e-5, projector_lr=2.5e-5, language_lr=2.5e-5),
        blend=BLEND, seq_len=32768, global_batch_size=64, train_tokens=550 * 10**9, init_from="stage3_multimodal",
        parallel=ParallelConfig(
            tensor_parallel=4, pipeline_parallel=2, sequence_parallel=True, first_pipeline_stage_language_layers=16
        ),
        schedule=LRSchedule(warmup_fraction=0.01),
        recompute=RecomputeSettings(enabled=True, method="uniform", num_layers=1),
        checkpoint=CheckpointSettings(save_every=500, keep_last=3), eval=EvalSettings(every=1000, samples=256),
    )
