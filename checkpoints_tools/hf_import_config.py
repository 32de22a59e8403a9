"""Our model and image configs from Hugging Face ``config.json`` / ``preprocessor_config.json`` files.

Accepts both the layout Qwen2.5-VL and MiMo-VL ship (text fields at the top level, ``rope_scaling``) and
the one transformers 5 writes (``text_config``, ``rope_parameters``); and, for a run assembled from parts, a
Qwen2.5-VL ``vision_config`` with a text-only Qwen2 / MiMo-7B-Base LLM config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from megatron_vl.config.model import LanguageConfig, ProjectorConfig, VisionConfig, VLModelConfig
from megatron_vl.data.images import ImageSettings
from megatron_vl.models.hf_mapping import HF_VISION_NORM_EPS

DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
# Qwen2.5-VL's M-RoPE gives a quarter of the rotary pairs to time and three eighths each to height and width.
MROPE_FRACTIONS = (2, 3, 3)


def read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; {what} needs it") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); restore it from the checkpoint's source") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} should hold a JSON object")
    return value


def _field(config: dict, names: tuple[str, ...], where: str, default=None):
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is not None:
        return default
    raise ValueError(f"{where} has none of the fields {list(names)}; it is not a Qwen2 / Qwen2.5-VL config")


def checkpoint_dtype(config: dict, override: str | None) -> str:
    """Our dtype name from ``--dtype`` or the config's ``dtype`` / ``torch_dtype`` (float16 becomes bfloat16)."""
    if override is not None:
        return DTYPE_NAMES[override]
    name = config.get("dtype") or config.get("torch_dtype") or (config.get("text_config") or {}).get("dtype") or "float32"
    return "bfloat16" if name in ("float16", "bfloat16") else "float32"


def vision_config(config: dict, where: str) -> VisionConfig:
    """Our ``VisionConfig`` from a Qwen2.5-VL ``vision_config`` object."""
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ValueError(f"{where} has no vision_config: it is not a Qwen2.5-VL config")
    where = f"{where} vision_config"
    rope = vision.get("rope_parameters") or {}
    return VisionConfig(
        num_layers=_field(vision, ("depth",), where),
        hidden_size=_field(vision, ("hidden_size",), where),
        num_attention_heads=_field(vision, ("num_heads",), where),
        ffn_hidden_size=_field(vision, ("intermediate_size",), where),
        full_attention_layers=tuple(_field(vision, ("fullatt_block_indexes",), where)),
        patch_size=_field(vision, ("patch_size",), where, 14),
        temporal_patch_size=_field(vision, ("temporal_patch_size",), where, 2),
        in_channels=_field(vision, ("in_channels", "in_chans"), where, 3),
        spatial_merge_size=_field(vision, ("spatial_merge_size",), where, 2),
        window_size=_field(vision, ("window_size",), where, 112),
        rope_theta=float(rope.get("rope_theta", 10000.0)),
        norm_eps=HF_VISION_NORM_EPS,
        tokens_per_second=_field(vision, ("tokens_per_second",), where, 2),
    )


def language_config(text: dict, where: str, *, mrope_section: tuple[int, int, int] | None = None) -> LanguageConfig:
    """Our ``LanguageConfig`` from a Qwen2.5-VL text config or a text-only Qwen2 / MiMo config.

    A text-only LLM has no M-RoPE sections: ``mrope_section`` gives them, else Qwen2.5-VL's proportions
    (16, 24, 24 of 64 rotary pairs) scaled to the head dim.
    """
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    hidden = _field(text, ("hidden_size",), where)
    heads = _field(text, ("num_attention_heads",), where)
    section = rope.get("mrope_section") or mrope_section
    if section is None:
        pairs = hidden // heads // 2
        if pairs % sum(MROPE_FRACTIONS):
            raise ValueError(
                f"{where} is a text-only LLM with {pairs} rotary pairs per head, which Qwen2.5-VL's M-RoPE split "
                f"{MROPE_FRACTIONS} does not divide; pass --mrope-section T H W summing to {pairs}"
            )
        section = [pairs // sum(MROPE_FRACTIONS) * fraction for fraction in MROPE_FRACTIONS]
    return LanguageConfig(
        num_layers=_field(text, ("num_hidden_layers",), where),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_query_groups=_field(text, ("num_key_value_heads",), where, heads),
        ffn_hidden_size=_field(text, ("intermediate_size",), where),
        vocab_size=_field(text, ("vocab_size",), where),
        mrope_section=tuple(section),
        rope_theta=float(_field(text, ("rope_theta",), where, rope.get("rope_theta", 1000000.0))),
        max_position_embeddings=_field(text, ("max_position_embeddings",), where, 32768),
        norm_eps=float(_field(text, ("rms_norm_eps",), where, 1e-6)),
    )


def vl_config_from_hf(config: dict, where: str, *, dtype: str, image_token_id: int) -> VLModelConfig:
    """Our config of a whole Qwen2.5-VL / MiMo-VL checkpoint."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    vision = vision_config(config, where)
    language = language_config(text, where)
    out_hidden = config["vision_config"].get("out_hidden_size", language.hidden_size)
    if out_hidden != language.hidden_size:
        raise ValueError(
            f"{where}: vision_config.out_hidden_size={out_hidden} but the LLM is {language.hidden_size} wide; "
            "the config is inconsistent"
        )
    return VLModelConfig(
        vision=vision,
        projector=ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size, norm_eps=HF_VISION_NORM_EPS),
        language=language,
        image_token_id=image_token_id,
        dtype=dtype,
    )


def vl_config_from_parts(
    vision_source: dict, llm: dict, where: str, *, dtype: str, image_token_id: int, mrope_section=None
) -> VLModelConfig:
    """Our config of a Qwen2.5-VL ViT, a fresh projector, and a text-only LLM."""
    vision = vision_config(vision_source, f"{where} (vision)")
    return VLModelConfig(
        vision=vision,
        projector=ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size, norm_eps=HF_VISION_NORM_EPS),
        language=language_config(llm, f"{where} (LLM)", mrope_section=mrope_section),
        image_token_id=image_token_id,
        dtype=dtype,
    )


def image_settings(directory: Path) -> ImageSettings:
    """Image settings from ``preprocessor_config.json`` (either ``min_pixels`` or ``size``), else the defaults."""
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return ImageSettings()
    processor = read_json(path, "the image settings")
    size = processor.get("size") or {}
    defaults = ImageSettings()
    return ImageSettings(
        min_pixels=processor.get("min_pixels") or size.get("shortest_edge") or defaults.min_pixels,
        max_pixels=processor.get("max_pixels") or size.get("longest_edge") or defaults.max_pixels,
        patch_size=processor.get("patch_size", defaults.patch_size),
        temporal_patch_size=processor.get("temporal_patch_size", defaults.temporal_patch_size),
        merge_size=processor.get("merge_size", defaults.merge_size),
    )


def config_differences(expected: VLModelConfig, found: VLModelConfig) -> list[str]:
    """``field: expected vs found`` for every model field that differs (dtype and image id aside)."""
    differences = []
    for part in ("vision", "projector", "language"):
        for field in dataclasses.fields(getattr(expected, part)):
            want, got = getattr(getattr(expected, part), field.name), getattr(getattr(found, part), field.name)
            if want != got:
                differences.append(f"{part}.{field.name}: preset {want!r}, checkpoint {got!r}")
    return differences
