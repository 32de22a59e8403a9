"""Self-attention that applies per-token rotary angles itself, for THD-packed sequences.

Both the ViT (2D rotary) and the LLM (M-RoPE) hand every layer one rotary angle vector per packed token,
[t, 1, 1, d]. megatron-core's own THD rotary (``rope_utils._apply_rotary_pos_emb_thd``) is not fit for that:
up to 0.14 it restarts positions in every segment of ``cu_seqlens`` (silently wrong for per-token angles);
from 0.15 it recognises per-token angles only when ``freqs.size(0) == cu_seqlens[-1]``, and then reads every
segment's offset with one ``.item()`` each, for q and for k, in every layer (thousands of host
synchronisations per layer on the ViT's window layers); the fused path (``apply_rope_fusion``) and padded
``cu_seqlens`` restart positions again. Per-token angles need no segment boundaries at all, so this class
rotates q and k token by token where megatron would have, and hands megatron's attention no rotary.
"""

from __future__ import annotations

import torch
from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.transformer_config import TransformerConfig


def apply_per_token_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """``x`` [t, b, heads, d] rotated by ``angles`` [t, 1, 1, r] (r <= d; the last d - r dims pass through).

    The rotate-half convention and the operation order of megatron's unfused rotary, so the result is
    bitwise the same as megatron's per-token path.
    """
    rotary_dim = angles.shape[-1]
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    first, second = torch.chunk(rotated, 2, dim=-1)
    rotated = rotated * cos + torch.cat((-second, first), dim=-1) * sin
    return torch.cat((rotated, passed), dim=-1)


def _check_config(config: TransformerConfig) -> None:
    if config.apply_rope_fusion:
        raise ValueError(
            "apply_rope_fusion=True: the fused THD rotary restarts positions in every packed segment, which is wrong "
            "for the per-token rotary angles of the ViT and the M-RoPE LLM; set apply_rope_fusion=False"
        )
    if config.rotary_interleaved:
        raise ValueError("rotary_interleaved=True: the ViT and the LLM rotate halves (as HF does); set rotary_interleaved=False")
    if config.no_rope_freq:
        raise ValueError("no_rope_freq is set: every ViT and LLM layer applies rotary; leave no_rope_freq unset")
    if "get_query_key_value_tensors" not in SelfAttention.forward.__code__.co_names:
        raise ValueError(
            "this megatron-core's SelfAttention.forward no longer calls get_query_key_value_tensors, where "
            "PerTokenRotarySelfAttention applies the rotary; install megatron-core 0.16.1 (the tested version)"
        )


class PerTokenRotarySelfAttention(SelfAttention):
    """megatron's ``SelfAttention`` with the rotary applied here, one angle vector per token, to the q and k
    that ``get_query_key_value_tensors`` returns: the same place as megatron's own rotary, so local and
    Transformer Engine core attention receive the same q and k as before, without a host synchronisation."""

    def __init__(self, config: TransformerConfig, *args, **kwargs) -> None:
        _check_config(config)
        super().__init__(config, *args, **kwargs)
        self._angles = None
        self._rotary_applied = False

    def forward(self, hidden_states, attention_mask, *, rotary_pos_emb=None, packed_seq_params=None, **kwargs):
        if packed_seq_params is not None and any(
            padded is not None and padded is not packed_seq_params.cu_seqlens_q
            for padded in (packed_seq_params.cu_seqlens_q_padded, packed_seq_params.cu_seqlens_kv_padded)
        ):
            raise ValueError(
                "PackedSeqParams with cu_seqlens_q_padded / cu_seqlens_kv_padded other than cu_seqlens reached the ViT "
                "or LLM attention; build them with models.packed_attention.packed_seq_params (padding is a segment "
                "of its own, or part of its document under context parallelism)"
            )
        assert rotary_pos_emb is None or isinstance(rotary_pos_emb, torch.Tensor), "one angle tensor for q and k"
        # get_query_key_value_tensors takes no rotary argument: the angles wait here for the duration of this call.
        self._angles, self._rotary_applied = rotary_pos_emb, False
        try:
            output = super().forward(
                hidden_states, attention_mask, rotary_pos_emb=None, packed_seq_params=packed_seq_params, **kwargs
            )
        finally:
            self._angles = None
        if rotary_pos_emb is not None and not self._rotary_applied:
            raise RuntimeError(
                "megatron-core's SelfAttention.forward did not call get_query_key_value_tensors, so no rotary was "
                "applied; install megatron-core 0.16.1 (the tested version)"
            )
        return output

    def get_query_key_value_tensors(self, *args, **kwargs):
        qkv = super().get_query_key_value_tensors(*args, **kwargs)
        if self._angles is None:
            return qkv
        query, key, *rest = qkv
        assert self._angles.shape[0] == query.shape[0], "one rotary angle vector per packed token"
        self._rotary_applied = True
        return (apply_per_token_rotary(query, self._angles), apply_per_token_rotary(key, self._angles), *rest)
