"""Stage 2, vision-language alignment: the ViT (LR 1e-5) and the projector (1e-4) train, the LLM stays
frozen, on captions plus interleaved documents.

``mimo_vl_7b``: 8K sequences, 167B tokens, global batch 256, from stage 1; TP=2 with sequence parallelism.
On launch/stage2_vit.sh's 64 GPUs: DP=32, 8 micro-batches per rank per step, no pipeline bubble; about 48 GiB
per GPU, most of it ViT activations at the worst case of all-image sequences.
``tiny``: 1024-token sequences, 20 steps of 8 sequences at DP=2 (TP=1) on 2 CPU ranks, from stage 1 (saved at
TP=2: the weights are resharded on load). Its learning rates are the 7B ones raised (ViT 3e-4, projector
1e-3) so that a random 64-wide model moves in tens of steps.
"""

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import BlendComponent, StageRecipe
from megatron_vl.config.training import CheckpointSettings, EvalSettings, LoggingSettings, LRSchedule, TrainedModules

BLEND = (BlendComponent(kind="caption", weight=1.0), BlendComponent(kind="interleaved", weight=1.0))


def recipe(model: str) -> StageRecipe:
    if model == "tiny":
        return StageRecipe(
            name="stage2_vit", model="tiny", trains=TrainedModules(vision_lr=3e-4, projector_lr=1e-3, language_lr=None),
            blend=BLEND, seq_len=1024, global_batch_size=8, train_tokens=20 * 8 * 1024, init_from="stage1_projector",
            parallel=ParallelConfig(), schedule=LRSchedule(warmup_fraction=0.1),
            checkpoint=CheckpointSettings(save_every=10, keep_last=2), logging=LoggingSettings(log_every=5),
            eval=EvalSettings(every=10, samples=4), num_workers=1,
        )
    return StageRecipe(
        name="stage2_vit", model="mimo_vl_7b", trains=TrainedModules(vision_lr=1e-5, projector_lr=1e-4, language_lr=None),
        blend=BLEND, seq_len=8192, global_batch_size=256, train_tokens=167 * 10**9, init_from="stage1_projector",
        parallel=ParallelConfig(tensor_parallel=2, sequence_parallel=True), schedule=LRSchedule(warmup_fraction=0.02),
        checkpoint=CheckpointSettings(save_every=1000, keep_last=3), eval=EvalSettings(every=2000, samples=1024),
    )
