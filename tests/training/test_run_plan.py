"""The run plan: micro-batches and bubble from the layout, parameters per GPU equal to the built model's,
memory by the documented formula on hand-computed cases (context parallelism included), and the step time
estimate from the model FLOPs, the recompute and the bubble."""

import dataclasses
import types

import pytest
import torch

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import load_recipe
from megatron_vl.config.training import RecomputeSettings, TrainedModules
from megatron_vl.runtime.platform import Platform
from megatron_vl.training.flops import language_forward_flops, training_flops
from megatron_vl.training.parameter_count import stage_parameters
from megatron_vl.training.run_config import RunPaths, resolve_run
from megatron_vl.training.run_plan import (
    ASSUMED_MFU,
    GIB,
    MemoryEstimate,
    pipeline_bubble_fraction,
    plan_run,
)
from tests.models.vl_batches import tiny_config
from tests.multirank import run_ranks

GPU = Platform(device="cuda", device_name="NVIDIA H200", layer_backend="transformer_engine", peak_flops=989e12)
PATHS = RunPaths(data_root="/d", checkpoint_root="/c", log_root="/l", tokenizer="/t")
TOKENIZER = types.SimpleNamespace(image_pad_id=5, video_pad_id=6, vocab_size=4096)
LANGUAGE_ONLY = TrainedModules(vision_lr=None, projector_lr=None, language_lr=1e-3)
PIPELINE = ParallelConfig(tensor_parallel=2, pipeline_parallel=2, first_pipeline_stage_language_layers=1)


def _run(**changes):
    recipe = dataclasses.replace(load_recipe("stage3_multimodal", "tiny"), **changes)
    return resolve_run(recipe, PATHS, TOKENIZER, GPU)


def test_micro_batches_and_bubble_follow_the_layout():
    # 8 ranks / (TP 2 x PP 2) = DP 2; 8 sequences / (2 x 1) = 4 micro-batches; bubble 1 / (4 + 1).
    plan = plan_run(_run(parallel=PIPELINE), world_size=8)
    assert (plan.data_parallel, plan.micro_batches_per_step) == (2, 4)
    assert plan.pipeline_bubble_fraction == pytest.approx(0.2)
    assert [stage.in_flight_micro_batches for stage in plan.stages] == [2, 1]
    assert [stage.language_layers for stage in plan.stages] == [1, 3]
    assert pipeline_bubble_fraction(1, 1) == 0.0 and pipeline_bubble_fraction(2, 2) == pytest.approx(1 / 3)


def test_a_world_the_layout_or_the_batch_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="not divisible by TP x PP x CP"):
        plan_run(_run(parallel=PIPELINE), world_size=6)
    with pytest.raises(ValueError, match="global_batch_size=8 is not divisible by data-parallel size 16"):
        plan_run(_run(parallel=PIPELINE), world_size=64)


def _count_built_parameters(config, parallel):
    from megatron_vl.runtime.model_parallel import initialize_model_parallel
    from tests.models.vl_batches import build_model

    model = build_model(config, parallel, initialize_model_parallel(parallel))
    parts = {"vision": model.vision_model, "projector": model.vision_projection, "language": model.language_model}
    return {name: 0 if part is None else sum(p.numel() for p in part.parameters()) for name, part in parts.items()}


def test_parameters_per_gpu_equal_the_built_model():
    # 4095 ids: the embedding and output layer are padded to 4096 rows, 2048 per TP rank.
    config = tiny_config()
    config = dataclasses.replace(config, language=dataclasses.replace(config.language, vocab_size=4095))
    built = run_ranks(_count_built_parameters, 4, config, PIPELINE)
    planned = [dataclasses.asdict(stage) for stage in stage_parameters(config, PIPELINE)]
    # megatron orders ranks TP-fastest: ranks 0-1 are the first pipeline stage, 2-3 the second.
    assert built == [planned[0], planned[0], planned[1], planned[1]]
    assert planned[1]["vision"] == 0 and planned[0]["vision"] > 0


# The tiny LLM at TP=1 without SP, 128 tokens: h 64, qkv (4 + 2 x 2) x 16 = 128, ffn 128, 4 layers, 4096 ids.
# One layer keeps 4 x 128 x 64 + 128 x (128 + 64 + 3 x 128) = 106496 elements; the last stage adds the final
# norm's and the output layer's inputs (2 x 128 x 64 = 16384) and the fp32 softmax (128 x 4096 x 4 bytes).
LAYER, LAYER_INPUT, HEAD, SOFTMAX_BYTES = 106496, 128 * 64, 16384, 128 * 4096 * 4


@pytest.mark.parametrize("recompute, activation_bytes", [
    (RecomputeSettings(), (4 * LAYER + HEAD) * 2 + SOFTMAX_BYTES),
    (RecomputeSettings(enabled=True, method="uniform", num_layers=1), (4 * LAYER_INPUT + HEAD + LAYER) * 2 + SOFTMAX_BYTES),
    (RecomputeSettings(enabled=True, method="uniform", num_layers=2), (2 * LAYER_INPUT + HEAD + 2 * LAYER) * 2 + SOFTMAX_BYTES),
    (RecomputeSettings(enabled=True, method="block", num_layers=1), (LAYER_INPUT + 3 * LAYER + HEAD + LAYER) * 2 + SOFTMAX_BYTES),
])
def test_memory_of_a_hand_computed_case(recompute, activation_bytes):
    run = _run(parallel=ParallelConfig(), seq_len=128, trains=LANGUAGE_ONLY, recompute=recompute)
    plan = plan_run(run, world_size=4)
    params = stage_parameters(run.model, ParallelConfig())[0]
    assert plan.stages[0].memory == MemoryEstimate(
        parameters=2 * params.total,  # bf16
        gradients=4 * params.language,  # fp32, trained modules only
        optimizer_state=12 * params.language // 4,  # fp32 main params + 2 Adam moments over DP 4
        activations=activation_bytes,
    )
    assert run.bf16 and plan.micro_batches_per_step == 2


def test_the_first_stage_holds_the_trained_vit_for_its_in_flight_micro_batches():
    frozen_vit = plan_run(_run(parallel=PIPELINE, trains=LANGUAGE_ONLY), world_size=8).stages[0]
    trained_vit = plan_run(_run(parallel=PIPELINE), world_size=8).stages[0]
    assert trained_vit.memory.activations > frozen_vit.memory.activations
    one_in_flight = plan_run(_run(parallel=PIPELINE, global_batch_size=2), world_size=8).stages[0]
    assert one_in_flight.in_flight_micro_batches == 1
    assert one_in_flight.memory.activations * 2 == trained_vit.memory.activations


def test_the_plan_document_names_the_worst_stage():
    plan = plan_run(_run(parallel=PIPELINE), world_size=8)
    document = plan.to_dict()
    worst = plan.worst_stage
    assert document["memory_gib_per_gpu"] == {"pipeline_stage": worst.pipeline_stage, **worst.memory.gib()}
    assert worst.memory.total == max(stage.memory.total for stage in plan.stages)
    assert [stage["language_layers"] for stage in document["pipeline_stages"]] == [1, 3]
    assert document["memory_gib_per_gpu"]["total"] == round(worst.memory.total / GIB, 2)


def test_context_parallel_divides_each_gpus_activations_and_shards_the_optimizer_over_dp_x_cp():
    # CP=2 at 256 tokens holds the 128 tokens per GPU of the hand-computed case above; 4 ranks = DP 2 x CP 2,
    # so the distributed optimizer still shards over 4.
    run = _run(parallel=ParallelConfig(context_parallel=2), seq_len=256, trains=LANGUAGE_ONLY)
    plan = plan_run(run, world_size=4)
    params = stage_parameters(run.model, ParallelConfig())[0]
    assert (plan.data_parallel, plan.context_parallel, plan.tokens_per_gpu) == (2, 2, 128)
    assert plan.stages[0].memory == MemoryEstimate(
        parameters=2 * params.total,
        gradients=4 * params.language,
        optimizer_state=12 * params.language // 4,
        activations=(4 * LAYER + HEAD) * 2 + SOFTMAX_BYTES,
    )
    assert plan.to_dict()["context_parallel"] == 2


def test_the_vit_share_of_a_cp_rank_is_a_cp_th_of_the_micro_batchs_patches():
    one = plan_run(_run(seq_len=256), world_size=4).stages[0].memory.activations
    two = plan_run(_run(parallel=ParallelConfig(context_parallel=2), seq_len=256), world_size=4).stages[0].memory.activations
    # Without recompute every term is linear in the tokens and patches a GPU holds, so CP=2 halves them all.
    assert two * 2 == pytest.approx(one, abs=2)


def _forward_of_the_language_layers(run) -> float:
    rows = torch.arange(0, run.recipe.global_batch_size + 1) * run.recipe.seq_len
    return language_forward_flops(run.model, rows)[0]


@pytest.mark.parametrize("recompute, recomputed_share", [
    (RecomputeSettings(), 0.0),
    (RecomputeSettings(enabled=True, method="uniform", num_layers=1), 1.0),  # every layer runs its forward again
    (RecomputeSettings(enabled=True, method="block", num_layers=1), 1 / 4),  # 1 of the 4 layers
])
def test_the_step_time_is_the_model_flops_and_the_recompute_at_the_assumed_mfu(recompute, recomputed_share):
    run = _run(parallel=ParallelConfig(), seq_len=128, trains=LANGUAGE_ONLY, recompute=recompute)
    step = plan_run(run, world_size=4).step_time
    rows = torch.arange(0, 9) * 128  # the global batch: 8 rows of one 128-token document
    model_flops = training_flops(run.model, LANGUAGE_ONLY.frozen, rows, torch.zeros(0, 3, dtype=torch.int64))
    recompute_flops = recomputed_share * _forward_of_the_language_layers(run)
    assert step.model_flops_per_gpu == pytest.approx(model_flops / 4)
    assert step.recompute_flops_per_gpu == pytest.approx(recompute_flops / 4)
    assert step.seconds == pytest.approx((model_flops + recompute_flops) / 4 / (989e12 * ASSUMED_MFU))


def test_the_step_time_stretches_by_the_bubble_and_is_unknown_without_a_peak():
    # PIPELINE on 8 ranks: bubble 1 / 5; block recompute of 1 layer on each of the two stages (1 + 3 layers).
    run = _run(parallel=PIPELINE, recompute=RecomputeSettings(enabled=True, method="block", num_layers=1))
    step = plan_run(run, world_size=8).step_time
    assert step.recompute_flops_per_gpu == pytest.approx(_forward_of_the_language_layers(run) * 2 / 4 / 8)
    busy = (step.model_flops_per_gpu + step.recompute_flops_per_gpu) / (989e12 * ASSUMED_MFU)
    assert step.seconds == pytest.approx(busy / (1 - 0.2))
    unknown = dataclasses.replace(step, peak_flops=None)
    assert unknown.seconds is None and unknown.to_dict()["seconds"] is None
