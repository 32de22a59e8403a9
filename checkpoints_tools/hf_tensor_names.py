"""Tensor names and shapes of Hugging Face Qwen2.5-VL folders, and of the text-only LLMs a run can start from.

transformers 5 names the model's tensors ``model.visual.*``, ``model.language_model.*`` and ``lm_head.*`` in
memory (what ``models/hf_mapping.py`` uses), but reads and writes files in the layout Qwen2.5-VL and MiMo-VL
ship: ``visual.*``, ``model.*`` and ``lm_head.*``. vLLM and SGLang read that layout too, so exports use it and
imports accept both. A text-only Qwen2 / MiMo-7B-Base checkpoint uses ``model.*`` and ``lm_head.*`` for the
LLM alone; MiMo adds multi-token-prediction layers (``model.mtp_layers.*``) that this model does not have.
"""

from __future__ import annotations

import functools

import torch

from megatron_vl.config.model import VLModelConfig
from megatron_vl.models.hf_config import to_hf_config

_VISUAL, _LANGUAGE = "model.visual.", "model.language_model."


def saved_name(name: str) -> str:
    """In-memory name -> the name in a Qwen2.5-VL safetensors file (``model.visual.x`` -> ``visual.x``)."""
    if name.startswith(_VISUAL):
        return "visual." + name[len(_VISUAL) :]
    if name.startswith(_LANGUAGE):
        return "model." + name[len(_LANGUAGE) :]
    return name


def memory_name(name: str) -> str:
    """A name from a Qwen2.5-VL file (either layout) or a text-only Qwen2 / MiMo file -> the in-memory name."""
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model.") and not name.startswith((_VISUAL, _LANGUAGE)):
        return _LANGUAGE + name[len("model.") :]
    return name


@functools.lru_cache(maxsize=4)
def _meta_shapes(config: VLModelConfig) -> dict[str, tuple[int, ...]]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # Placeholder special ids: they do not change any tensor's shape.
    hf_config = Qwen2_5_VLConfig(**to_hf_config(config, vision_start_token_id=0, vision_end_token_id=0))
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(hf_config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def expected_shapes(config: VLModelConfig) -> dict[str, tuple[int, ...]]:
    """In-memory name -> shape of every tensor of transformers' model for ``config`` (built on the meta device)."""
    return dict(_meta_shapes(config))
