"""Stage 0, the LLM's text-only warm-up, for models whose LLM starts from random weights (``tiny``).

MiMo-VL's curriculum starts from a pretrained LLM (MiMo-7B-Base), so stages 1 and 2, which train only the
projector and the ViT, have an LLM that already writes. A random LLM gives them nothing to align to: their loss
stays at ln(vocab). This stage gives ``tiny`` what pre-training gave MiMo-7B-Base: the LLM alone trains on the
demo's text (``text``) and on its picture documents' text without the pictures (``language``: captions,
grounding queries and boxes, OCR transcripts; ``data_prep demo-corpus --kinds language``).

``tiny``: 1024-token sequences, 150 steps of 8 sequences at DP=2 on 2 CPU ranks, LR 1e-3, from random weights
(its training and held-out losses change little after step 150).
``mimo_vl_7b``: none; its stage 1 starts from the HF weights of a pretrained LLM (``checkpoints_tools.from_hf``).
"""

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import BlendComponent, StageRecipe
from megatron_vl.config.training import CheckpointSettings, EvalSettings, LoggingSettings, LRSchedule, TrainedModules

BLEND = (BlendComponent(kind="language", weight=0.75), BlendComponent(kind="text", weight=0.25))
TRAINS = TrainedModules(vision_lr=None, projector_lr=None, language_lr=1e-3)


def recipe(model: str) -> StageRecipe:
    if model != "tiny":
        raise ValueError(
            f"stage0_language is the text warm-up of a random LLM; {model} starts from a pretrained LLM: import it "
            "with `python -m checkpoints_tools.from_hf` and begin with stage1_projector"
        )
    return StageRecipe(
        name="stage0_language", model="tiny", trains=TRAINS, blend=BLEND, seq_len=1024,
        global_batch_size=8, train_tokens=150 * 8 * 1024, init_from=None,
        parallel=ParallelConfig(), schedule=LRSchedule(warmup_fraction=0.05),
        checkpoint=CheckpointSettings(save_every=50, keep_last=1), logging=LoggingSettings(log_every=10),
        eval=EvalSettings(every=50, samples=4), num_workers=1,
    )
