"""``PerTokenRotarySelfAttention``: the ViT's and the LLM's layers give bitwise the results of megatron-core
0.16.1's own per-token THD rotary, without a host synchronisation in any layer (forward, backward, activation
recompute), and the configurations that would make the rotary silently wrong are refused.

The layer checks run in one spawned rank (module fixture); the refusals of a configuration run in-process.
"""

import dataclasses
import functools

import pytest
import torch
from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.models.packed_rotary import PerTokenRotarySelfAttention
from tests.models.host_syncs import record_host_syncs
from tests.models.vl_batches import tiny_config

VIT_GRIDS = [(1, 8, 12), (1, 4, 4)]  # windows of 64, 32 and 16 patches; frames of 96 and 16
LLM_CU_SEQLENS = [0, 5, 22, 23, 32]


def _with_megatron_rotary(layer_spec):
    """``layer_spec`` with megatron's ``SelfAttention``, which applies the rotary in megatron-core's rope_utils."""
    attention = dataclasses.replace(layer_spec.submodules.self_attention, module=SelfAttention)
    return dataclasses.replace(layer_spec, submodules=dataclasses.replace(layer_spec.submodules, self_attention=attention))


def _run(block, inputs: dict) -> dict:
    """Forward and backward of ``block``: its output, the input's gradient and every parameter's gradient."""
    hidden = inputs["hidden"].clone().requires_grad_()
    block.zero_grad()
    output = block(hidden_states=hidden, attention_mask=None, rotary_pos_emb=inputs["angles"], packed_seq_params=inputs["segments"])
    (output * inputs["cotangent"]).sum().backward()
    grads = {name: param.main_grad if hasattr(param, "main_grad") else param.grad for name, param in block.named_parameters()}
    return {"output": output.detach(), "input grad": hidden.grad, "param grads": grads}


def _counted_run(block, inputs: dict) -> tuple[dict, list[str]]:
    with record_host_syncs() as syncs:
        result = _run(block, inputs)
    return result, syncs


def _vit_inputs(vision, generator):
    from megatron_vl.models.packed_attention import packed_seq_params
    from megatron_vl.models.vision import VisionAttentionSegments, vision_rotary_embedding
    from megatron_vl.models.vision_windows import vision_windows

    windows = vision_windows(
        torch.tensor(VIT_GRIDS), spatial_merge_size=vision.spatial_merge_size, window_merged_patches=vision.window_merged_patches
    )
    tokens = len(windows.patch_order)
    window, full = packed_seq_params(windows.window_cu_seqlens), packed_seq_params(windows.frame_cu_seqlens)
    return {
        "hidden": torch.randn(tokens, 1, vision.hidden_size, generator=generator),
        "cotangent": torch.randn(tokens, 1, vision.hidden_size, generator=generator),
        "angles": vision_rotary_embedding(windows.positions[windows.patch_order], vision.head_dim, vision.rope_theta),
        "segments": VisionAttentionSegments(window=window, full=full),
        "segmentations": [window, full],
    }


def _llm_inputs(language, generator):
    from megatron_vl.models.packed_attention import packed_seq_params

    tokens = LLM_CU_SEQLENS[-1]
    segments = packed_seq_params(torch.tensor(LLM_CU_SEQLENS))
    return {
        "hidden": torch.randn(tokens, 1, language.hidden_size, generator=generator),
        "cotangent": torch.randn(tokens, 1, language.hidden_size, generator=generator),
        # Any per-token angles: the LLM's come from megatron's M-RoPE embedding of the (t, h, w) positions.
        "angles": torch.randn(tokens, 1, 1, language.head_dim, generator=generator) * 10,
        "segments": segments,
        "segmentations": [segments],
    }


def _group_segments_by_length(inputs: dict) -> None:
    """What the first layer of a forward does for the local core attention, once per segmentation: group the
    segments by length on the host. Every later layer, and every layer's backward and recompute, reuses it."""
    for params in inputs["segmentations"]:
        params.length_groups  # noqa: B018 - computing the cached grouping is the point


def _compare(name: str, build, inputs: dict, results: dict) -> None:
    """Our layers against megatron's rotary on the same weights, each counted for host synchronisations."""
    ours, reference = build(ours=True), build(ours=False)
    reference.load_state_dict(ours.state_dict())
    _group_segments_by_length(inputs)
    ours_result, ours_syncs = _counted_run(ours, inputs)
    reference_result, reference_syncs = _counted_run(reference, inputs)
    results[name] = {"ours": ours_result, "megatron": reference_result, "ours syncs": ours_syncs, "megatron syncs": reference_syncs}


def _rank_checks() -> dict:
    from megatron.core.packed_seq_params import PackedSeqParams
    from megatron.core.transformer.transformer_block import TransformerBlock

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.specs import language_block_spec, layer_modules, vision_layer_spec
    from megatron_vl.models.transformer_configs import language_transformer_config, vision_transformer_config
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    platform = detect_platform()
    modules = layer_modules(platform.layer_backend)
    config = tiny_config()
    config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, num_layers=2, full_attention_layers=(1,)))
    generator = torch.Generator().manual_seed(0)
    recompute = {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    results = {}

    def vit(*, ours: bool, **config_changes):
        transformer_config = dataclasses.replace(vision_transformer_config(config, parallel, platform), **config_changes)
        spec = vision_layer_spec(modules, config.vision)
        return TransformerBlock(transformer_config, spec if ours else _with_megatron_rotary(spec), post_process=False, pg_collection=pgs)

    def llm(*, ours: bool, **config_changes):
        transformer_config = dataclasses.replace(language_transformer_config(config, parallel, platform), **config_changes)
        spec = language_block_spec(modules, transformer_config, pp_rank=0)
        if not ours:
            spec = dataclasses.replace(spec, layer_specs=[_with_megatron_rotary(layer) for layer in spec.layer_specs])
        return TransformerBlock(transformer_config, spec, post_process=False, pg_collection=pgs)

    vit_inputs, llm_inputs = _vit_inputs(config.vision, generator), _llm_inputs(config.language, generator)
    _compare("vit (window layer, full layer)", vit, vit_inputs, results)
    _compare("vit with activation recompute", functools.partial(vit, **recompute), vit_inputs, results)
    _compare("llm", llm, llm_inputs, results)
    _compare("llm with activation recompute", functools.partial(llm, **recompute), llm_inputs, results)

    errors = {}
    cu_seqlens = llm_inputs["segments"].cu_seqlens_q
    # Padded boundaries other than the segments' (TE's padding between documents), which would shift positions.
    other = cu_seqlens + torch.arange(len(cu_seqlens), dtype=cu_seqlens.dtype)
    padded = PackedSeqParams(
        qkv_format="thd", cu_seqlens_q=cu_seqlens, cu_seqlens_kv=cu_seqlens, cu_seqlens_q_padded=other, cu_seqlens_kv_padded=other
    )
    try:
        _run(llm(ours=True), {**llm_inputs, "segments": padded})
    except ValueError as error:
        errors["padded cu_seqlens"] = str(error)
    bypassed = llm(ours=True)
    for layer in bypassed.layers:
        attention = layer.self_attention
        attention.get_query_key_value_tensors = functools.partial(SelfAttention.get_query_key_value_tensors, attention)
    try:
        _run(bypassed, llm_inputs)
    except RuntimeError as error:
        errors["seam bypassed"] = str(error)
    results["errors"] = errors
    return results


@pytest.fixture(scope="module")
def rank():
    from tests.multirank import run_ranks

    return run_ranks(_rank_checks, 1)[0]


CASES = ["vit (window layer, full layer)", "vit with activation recompute", "llm", "llm with activation recompute"]


@pytest.mark.parametrize("case", CASES)
def test_layers_equal_megatrons_per_token_rotary_bitwise(rank, case):
    ours, megatron = rank[case]["ours"], rank[case]["megatron"]
    assert torch.equal(ours["output"], megatron["output"])
    assert torch.equal(ours["input grad"], megatron["input grad"])
    assert ours["param grads"].keys() == megatron["param grads"].keys()
    for name, grad in ours["param grads"].items():
        assert torch.equal(grad, megatron["param grads"][name]), name


@pytest.mark.parametrize("case", CASES)
def test_layers_do_not_synchronise_with_the_host(rank, case):
    # Covers the whole layers, local core attention included (its per-length grouping is made once per forward).
    assert rank[case]["ours syncs"] == []
    # megatron's THD rotary reads every segment's offset with .item(): the count sees it.
    assert any("rope_utils" in call for call in rank[case]["megatron syncs"])


def test_padded_cu_seqlens_are_refused(rank):
    assert "cu_seqlens_q_padded" in rank["errors"]["padded cu_seqlens"]


def test_forward_that_skips_the_seam_is_refused(rank):
    assert "no rotary was applied" in rank["errors"]["seam bypassed"]


def _config(**changes) -> TransformerConfig:
    config = TransformerConfig(num_layers=1, hidden_size=8, num_attention_heads=2)
    # Set after construction: TransformerConfig itself refuses apply_rope_fusion without Transformer Engine.
    for name, value in changes.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"apply_rope_fusion": True}, "set apply_rope_fusion=False"),
        ({"rotary_interleaved": True}, "set rotary_interleaved=False"),
        ({"no_rope_freq": [1]}, "leave no_rope_freq unset"),
    ],
)
def test_configs_that_break_per_token_rotary_are_refused_at_build(changes, message):
    with pytest.raises(ValueError, match=message):
        PerTokenRotarySelfAttention(_config(**changes), submodules=None, layer_number=1)


def test_megatron_without_the_seam_is_refused_at_build(monkeypatch):
    monkeypatch.setattr(SelfAttention, "forward", lambda self, hidden_states, attention_mask, **kwargs: None)
    with pytest.raises(ValueError, match="no longer calls get_query_key_value_tensors"):
        PerTokenRotarySelfAttention(_config(), submodules=None, layer_number=1)
