"""The vision-language model on megatron-core: Qwen2.5-ViT, projector, M-RoPE LLM, layer specs, HF weight mapping."""

from megatron_vl.models.vl_model import VLModel

__all__ = ["VLModel"]
