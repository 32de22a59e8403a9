"""Our model and image configs <-> Hugging Face Qwen2.5-VL configs, both ways, in one place.

To HF: ``to_hf_config`` gives ``config.json`` (``Qwen2_5_VLConfig``), ``to_hf_preprocessor_config`` gives
``preprocessor_config.json`` (``Qwen2VLImageProcessor``). From HF: ``from_hf_config`` reads both layouts a
``config.json`` comes in (Qwen2.5-VL and MiMo-VL ship text fields at the top level with ``rope_scaling``;
transformers 5 writes ``text_config`` and ``rope_parameters``); ``from_hf_parts`` assembles a Qwen2.5-VL
``vision_config`` with a text-only Qwen2 / MiMo-7B-Base LLM config; ``image_settings_from_hf`` reads a
preprocessor config (``min_pixels`` or ``size``). Reading the files is the caller's job.
"""

from __future__ import annotations

import dataclasses

from megatron_vl.config.model import LanguageConfig, ProjectorConfig, VisionConfig, VLModelConfig
from megatron_vl.data.images import IMAGE_MEAN, IMAGE_STD, ImageSettings

HF_VISION_NORM_EPS = 1e-6
"""HF's Qwen2.5-ViT and merger hard-code this RMSNorm epsilon."""
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
# Qwen2.5-VL's M-RoPE gives a quarter of the rotary pairs to time and three eighths each to height and width.
MROPE_FRACTIONS = (2, 3, 3)


def _field(config: dict, names: tuple[str, ...], where: str, default=None):
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is not None:
        return default
    raise ValueError(f"{where} has none of the fields {list(names)}; it is not a Qwen2 / Qwen2.5-VL config")


def dtype_from_hf(config: dict, override: str | None) -> str:
    """Our dtype name from ``--dtype`` or the config's ``dtype`` / ``torch_dtype`` (float16 becomes bfloat16)."""
    if override is not None:
        return DTYPE_NAMES[override]
    name = config.get("dtype") or config.get("torch_dtype") or (config.get("text_config") or {}).get("dtype") or "float32"
    return "bfloat16" if name in ("float16", "bfloat16") else "float32"


def vision_config_from_hf(config: dict, where: str) -> VisionConfig:
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


def language_config_from_hf(text: dict, where: str, *, mrope_section: tuple[int, int, int] | None = None) -> LanguageConfig:
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


def from_hf_config(config: dict, where: str, *, dtype: str, image_token_id: int, video_token_id: int) -> VLModelConfig:
    """Our config of a whole Qwen2.5-VL / MiMo-VL checkpoint; the placeholder ids are the tokenizer's (the caller
    checks them against the ones ``config`` declares)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    vision = vision_config_from_hf(config, where)
    language = language_config_from_hf(text, where)
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
        video_token_id=video_token_id,
        dtype=dtype,
    )


def from_hf_parts(
    vision_source: dict, llm: dict, where: str, *, dtype: str, image_token_id: int, video_token_id: int, mrope_section=None
) -> VLModelConfig:
    """Our config of a Qwen2.5-VL ViT, a fresh projector, and a text-only LLM."""
    vision = vision_config_from_hf(vision_source, f"{where} (vision)")
    return VLModelConfig(
        vision=vision,
        projector=ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size, norm_eps=HF_VISION_NORM_EPS),
        language=language_config_from_hf(llm, f"{where} (LLM)", mrope_section=mrope_section),
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        dtype=dtype,
    )


def config_differences(expected: VLModelConfig, found: VLModelConfig) -> list[str]:
    """``field: expected vs found`` for every model field that differs (dtype and placeholder ids aside)."""
    differences = []
    for part in ("vision", "projector", "language"):
        for field in dataclasses.fields(getattr(expected, part)):
            want, got = getattr(getattr(expected, part), field.name), getattr(getattr(found, part), field.name)
            if want != got:
                differences.append(f"{part}.{field.name}: preset {want!r}, checkpoint {got!r}")
    return differences


def to_hf_config(
    config: VLModelConfig,
    *,
    vision_start_token_id: int,
    vision_end_token_id: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> dict:
    """The ``Qwen2_5_VLConfig`` of this model as a dict (``Qwen2_5_VLConfig(**d)`` or a ``config.json``).

    The image and video placeholder ids are the config's; the other special-token ids come from the tokenizer. Rotary settings are written both as transformers 5's
    ``rope_parameters`` (ViT) and as the ``rope_theta`` / ``rope_scaling`` fields older readers expect (LLM).
    """
    vision, language = config.vision, config.language
    if config.projector.ffn_hidden_size != vision.merged_hidden_size:
        raise ValueError(
            f"ProjectorConfig.ffn_hidden_size={config.projector.ffn_hidden_size} but HF's merger is "
            f"{vision.merged_hidden_size} wide (vision hidden x merge²); this model has no HF equivalent"
        )
    if vision.norm_eps != HF_VISION_NORM_EPS or config.projector.norm_eps != HF_VISION_NORM_EPS:
        raise ValueError(
            f"HF's Qwen2.5-ViT and merger hard-code RMSNorm eps {HF_VISION_NORM_EPS}; set VisionConfig.norm_eps and "
            "ProjectorConfig.norm_eps to it for an HF-equivalent model"
        )
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "dtype": config.dtype,
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "vision_start_token_id": vision_start_token_id,
        "vision_end_token_id": vision_end_token_id,
        "tie_word_embeddings": False,
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": language.vocab_size,
            "hidden_size": language.hidden_size,
            "intermediate_size": language.ffn_hidden_size,
            "num_hidden_layers": language.num_layers,
            "num_attention_heads": language.num_attention_heads,
            "num_key_value_heads": language.num_query_groups,
            "hidden_act": "silu",
            "max_position_embeddings": language.max_position_embeddings,
            "rms_norm_eps": language.norm_eps,
            "rope_theta": language.rope_theta,
            "rope_scaling": {"type": "mrope", "mrope_section": list(language.mrope_section)},
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "model_type": "qwen2_5_vl_vision",
            "depth": vision.num_layers,
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.ffn_hidden_size,
            "num_heads": vision.num_attention_heads,
            "in_channels": vision.in_channels,
            "patch_size": vision.patch_size,
            "temporal_patch_size": vision.temporal_patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "window_size": vision.window_size,
            "fullatt_block_indexes": list(vision.full_attention_layers),
            "out_hidden_size": language.hidden_size,
            "tokens_per_second": vision.tokens_per_second,
            "hidden_act": "silu",
            "rope_parameters": {"rope_type": "axial", "rope_theta": vision.rope_theta},
        },
    }


def to_hf_preprocessor_config(settings: ImageSettings) -> dict:
    """``Qwen2VLImageProcessor``'s settings (the pixels range of the data the model saw)."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "min_pixels": settings.min_pixels,
        "max_pixels": settings.max_pixels,
        "size": {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
        "patch_size": settings.patch_size,
        "temporal_patch_size": settings.temporal_patch_size,
        "merge_size": settings.merge_size,
    }


def image_settings_from_hf(processor: dict) -> ImageSettings:
    """Image settings of a ``preprocessor_config.json`` (either ``min_pixels`` or ``size``); ours where it says nothing."""
    size = processor.get("size") or {}
    defaults = ImageSettings()
    return ImageSettings(
        min_pixels=processor.get("min_pixels") or size.get("shortest_edge") or defaults.min_pixels,
        max_pixels=processor.get("max_pixels") or size.get("longest_edge") or defaults.max_pixels,
        patch_size=processor.get("patch_size", defaults.patch_size),
        temporal_patch_size=processor.get("temporal_patch_size", defaults.temporal_patch_size),
        merge_size=processor.get("merge_size", defaults.merge_size),
    )
