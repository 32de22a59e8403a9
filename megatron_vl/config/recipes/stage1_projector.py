"""Stage 1, projector warm-up: only the projector trains (LR 1e-3), on image-caption pairs.

``mimo_vl_7b``: 8K sequences, 300B tokens, global batch 256 (2M tokens a step), from the HF weights
converted by ``checkpoints_tools.from_hf`` (``$MVL_CHECKPOINT_ROOT/from_hf``); TP=2 with sequence
parallelism: the frozen LLM still carries activations for the projector's gradients. On
launch/stage1_projector.sh's 64 GPUs: DP=32, 8 micro-batches per rank per step, no pipeline bubble; about 27 GiB
per GPU (``train --dry-run``).
``tiny``: 1024-token sequences, 20 steps of 8 sequences at TP=2 with sequence parallelism on 2 CPU ranks,
from stage 0's LLM (the text warm-up ``stage0_language``) with a random ViT and projector.
"""

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import FROM_HF, BlendComponent, StageRecipe
from megatron_vl.config.training import CheckpointSettings, EvalSettings, LoggingSettings, LRSchedule, TrainedModules

BLEND = (BlendComponent(kind="caption", weight=1.0),)
TRAINS = TrainedModules(vision_lr=None, projector_lr=1e-3, language_lr=None)


def recipe(model: str) -> StageRecipe:
    if model == "tiny":
        return StageRecipe(
            name="stage1_projector", model="tiny", trains=TRAINS, blend=BLEND, seq_len=1024,
            global_batch_size=8, train_tokens=20 * 8 * 1024, init_from="stage0_language",
            parallel=ParallelConfig(tensor_parallel=2, sequence_parallel=True), schedule=LRSchedule(warmup_fraction=0.1),
            checkpoint=CheckpointSettings(save_every=10, keep_last=2), logging=LoggingSettings(log_every=5),
            eval=EvalSettings(every=10, samples=4), num_workers=1,
        )
    return StageRecipe(
        name="stage1_projector", model="mimo_vl_7b", trains=TRAINS, blend=BLEND, seq_len=8192,
        global_batch_size=256, train_tokens=300 * 10**9, init_from=FROM_HF,
        parallel=ParallelConfig(tensor_parallel=2, sequence_parallel=True), schedule=LRSchedule(warmup_fraction=0.02),
        checkpoint=CheckpointSettings(save_every=1000, keep_last=3), eval=EvalSettings(every=2000, samples=1024),
    )
