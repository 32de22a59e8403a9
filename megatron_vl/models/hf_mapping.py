"""In-memory weight mapping between ``VLModel`` (TP=1, PP=1 state dict) and HF ``Qwen2_5_VLForConditionalGeneration``
(the config mapping, both ways, is ``models/hf_config.py``).

The mapping is a list of ``WeightRule``s, each converting one small group of tensors (e.g. one layer's
q, k and v) in either direction, so a converter can stream a 7B checkpoint layer by layer: take the
rules, load only their tensors, convert, write. ``to_hf`` / ``from_hf`` apply all rules to whole state dicts.

Layout differences handled here:

* fused QKV: HF keeps [Q; K; V] (the ViT's ``attn.qkv``) or separate ``q_proj`` / ``k_proj`` / ``v_proj``
  (the LLM); megatron interleaves per query group: [q heads of group 0; k_0; v_0; q heads of group 1; ...];
* SwiGLU: megatron's ``linear_fc1`` is [gate; up]; HF has ``gate_proj`` and ``up_proj``;
* patch embedding: HF's Conv3d kernel [hidden, 3, 2, 14, 14] is megatron's Linear weight [hidden, 1176].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from megatron_vl.config.model import VLModelConfig

Tensors = tuple[torch.Tensor, ...]


@dataclasses.dataclass(frozen=True)
class WeightRule:
    """Converts the megatron tensors named ``megatron`` into the HF tensors named ``hf`` (in order), and back."""

    megatron: tuple[str, ...]
    hf: tuple[str, ...]
    to_hf: Callable[..., Tensors]
    from_hf: Callable[..., Tensors]


def interleave_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_query_groups: int) -> torch.Tensor:
    """q [heads*d, ...], k and v [groups*d, ...] -> megatron's fused [(heads + 2*groups)*d, ...], grouped per query group."""
    per_group = [x.reshape(num_query_groups, -1, *x.shape[1:]) for x in (q, k, v)]
    return torch.cat(per_group, dim=1).reshape(-1, *q.shape[1:])


def split_qkv(qkv: torch.Tensor, num_heads: int, num_query_groups: int) -> Tensors:
    """megatron's fused QKV -> (q, k, v), the inverse of ``interleave_qkv``."""
    heads_per_group = num_heads // num_query_groups
    per_group = qkv.reshape(num_query_groups, heads_per_group + 2, -1, *qkv.shape[1:])
    q, k, v = per_group.split([heads_per_group, 1, 1], dim=1)
    return tuple(x.reshape(-1, *qkv.shape[1:]) for x in (q, k, v))


def _same(*tensors: torch.Tensor) -> Tensors:
    return tensors


def _copy(megatron: str, hf: str) -> WeightRule:
    return WeightRule((megatron,), (hf,), _same, _same)


def _gated_fc1(megatron: str, gate: str, up: str) -> WeightRule:
    return WeightRule(
        (megatron,),
        (gate, up),
        lambda fc1: tuple(fc1.chunk(2)),
        lambda gate_part, up_part: (torch.cat([gate_part, up_part]),),
    )


def _separate_qkv(megatron: str, hf: tuple[str, str, str], heads: int, groups: int) -> WeightRule:
    return WeightRule(
        (megatron,),
        hf,
        lambda qkv: split_qkv(qkv, heads, groups),
        lambda q, k, v: (interleave_qkv(q, k, v, groups),),
    )


def _fused_qkv(megatron: str, hf: str, heads: int) -> WeightRule:
    """The ViT: HF's fused [Q; K; V] with one key/value head per query head."""
    return WeightRule(
        (megatron,),
        (hf,),
        lambda qkv: (torch.cat(split_qkv(qkv, heads, heads)),),
        lambda fused: (interleave_qkv(*fused.chunk(3), heads),),
    )


def weight_rules(config: VLModelConfig) -> list[WeightRule]:
    """Every tensor of ``VLModel`` at TP=1 PP=1, as rules of small groups: ViT, projector, LLM layer by layer."""
    vision, language = config.vision, config.language
    patch_kernel = (vision.hidden_size, vision.in_channels, vision.temporal_patch_size, vision.patch_size, vision.patch_size)
    rules = [
        WeightRule(
            ("vision_model.patch_embed.weight",),
            ("model.visual.patch_embed.proj.weight",),
            lambda w: (w.reshape(patch_kernel),),
            lambda w: (w.reshape(vision.hidden_size, -1),),
        )
    ]
    for i in range(vision.num_layers):
        ours, theirs = f"vision_model.decoder.layers.{i}", f"model.visual.blocks.{i}"
        for kind in ("weight", "bias"):
            rules += [
                _fused_qkv(f"{ours}.self_attention.linear_qkv.{kind}", f"{theirs}.attn.qkv.{kind}", vision.num_attention_heads),
                _copy(f"{ours}.self_attention.linear_proj.{kind}", f"{theirs}.attn.proj.{kind}"),
                _gated_fc1(f"{ours}.mlp.linear_fc1.{kind}", f"{theirs}.mlp.gate_proj.{kind}", f"{theirs}.mlp.up_proj.{kind}"),
                _copy(f"{ours}.mlp.linear_fc2.{kind}", f"{theirs}.mlp.down_proj.{kind}"),
            ]
        rules += [
            _copy(f"{ours}.input_layernorm.weight", f"{theirs}.norm1.weight"),
            _copy(f"{ours}.pre_mlp_layernorm.weight", f"{theirs}.norm2.weight"),
        ]
    rules.append(_copy("vision_projection.norm.weight", "model.visual.merger.ln_q.weight"))
    for kind in ("weight", "bias"):
        rules += [
            _copy(f"vision_projection.encoder.linear_fc1.{kind}", f"model.visual.merger.mlp.0.{kind}"),
            _copy(f"vision_projection.encoder.linear_fc2.{kind}", f"model.visual.merger.mlp.2.{kind}"),
        ]

    rules.append(_copy("language_model.embedding.word_embeddings.weight", "model.language_model.embed_tokens.weight"))
    heads, groups = language.num_attention_heads, language.num_query_groups
    for i in range(language.num_layers):
        ours, theirs = f"language_model.decoder.layers.{i}", f"model.language_model.layers.{i}"
        attn = f"{theirs}.self_attn"
        for kind in ("weight", "bias"):
            rules.append(
                _separate_qkv(
                    f"{ours}.self_attention.linear_qkv.{kind}",
                    (f"{attn}.q_proj.{kind}", f"{attn}.k_proj.{kind}", f"{attn}.v_proj.{kind}"),
                    heads,
                    groups,
                )
            )
        rules += [
            _copy(f"{ours}.input_layernorm.weight", f"{theirs}.input_layernorm.weight"),
            _copy(f"{ours}.self_attention.linear_proj.weight", f"{attn}.o_proj.weight"),
            _copy(f"{ours}.pre_mlp_layernorm.weight", f"{theirs}.post_attention_layernorm.weight"),
            _gated_fc1(f"{ours}.mlp.linear_fc1.weight", f"{theirs}.mlp.gate_proj.weight", f"{theirs}.mlp.up_proj.weight"),
            _copy(f"{ours}.mlp.linear_fc2.weight", f"{theirs}.mlp.down_proj.weight"),
        ]
    rules += [
        _copy("language_model.decoder.final_layernorm.weight", "model.language_model.norm.weight"),
        _copy("language_model.output_layer.weight", "lm_head.weight"),
    ]
    return rules


def _convert(
    state_dict: Mapping[str, torch.Tensor],
    rules: list[WeightRule],
    source: str,
    target: str,
    convert: str,
    what: str,
) -> dict[str, torch.Tensor]:
    expected = {name for rule in rules for name in getattr(rule, source)}
    present = {name for name in state_dict if not name.endswith("._extra_state")}
    if present != expected:
        missing, unknown = sorted(expected - present), sorted(present - expected)
        raise ValueError(
            f"{what} does not match the model config: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unknown {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; check that the config matches the "
            "checkpoint (layer counts, which model it is) and that the state dict is TP=1, PP=1"
        )
    converted = {}
    for rule in rules:
        outputs = getattr(rule, convert)(*(state_dict[name] for name in getattr(rule, source)))
        converted.update((name, tensor.contiguous()) for name, tensor in zip(getattr(rule, target), outputs))
    return converted


def to_hf(state_dict: Mapping[str, torch.Tensor], config: VLModelConfig) -> dict[str, torch.Tensor]:
    """``VLModel`` state dict (TP=1, PP=1) -> ``Qwen2_5_VLForConditionalGeneration`` state dict."""
    return _convert(state_dict, weight_rules(config), "megatron", "hf", "to_hf", "the VLModel state dict")


def from_hf(hf_state_dict: Mapping[str, torch.Tensor], config: VLModelConfig) -> dict[str, torch.Tensor]:
    """``Qwen2_5_VLForConditionalGeneration`` state dict -> ``VLModel`` state dict (TP=1, PP=1)."""
    return _convert(hf_state_dict, weight_rules(config), "hf", "megatron", "from_hf", "the HF state dict")
