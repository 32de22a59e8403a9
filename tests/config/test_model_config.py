"""Model config presets and every validation error, each naming the field to change."""

import dataclasses

import pytest

from megatron_vl.config.model import (
    PRESETS,
    LanguageConfig,
    VisionConfig,
    VLModelConfig,
    mimo_vl_7b,
    model_preset,
    saved_model_fields,
    tiny,
)
from megatron_vl.config.parallel import ParallelConfig

TINY = tiny(image_token_id=5, video_token_id=6)


def test_mimo_vl_7b_has_the_design_numbers():
    config = mimo_vl_7b(image_token_id=151655, video_token_id=151656)
    vision, language = config.vision, config.language
    assert (vision.num_layers, vision.hidden_size, vision.num_attention_heads, vision.head_dim) == (32, 1280, 16, 80)
    assert vision.full_attention_layers == (7, 15, 23, 31)
    assert (vision.patch_size, vision.temporal_patch_size, vision.window_size, vision.spatial_merge_size) == (14, 2, 112, 2)
    assert (vision.patch_dim, vision.window_merged_patches, vision.rope_theta, vision.norm_eps) == (1176, 4, 10000.0, 1e-6)
    assert (vision.merged_hidden_size, config.projector.ffn_hidden_size) == (5120, 5120)
    assert (language.num_layers, language.hidden_size, language.num_attention_heads, language.num_query_groups) == (36, 4096, 32, 8)
    assert (language.ffn_hidden_size, language.vocab_size, language.rope_theta) == (11008, 151680, 640000.0)
    assert (language.mrope_section, language.max_position_embeddings) == ((16, 24, 24), 32768)
    config.validate_parallel(ParallelConfig(tensor_parallel=4, pipeline_parallel=4, sequence_parallel=True))


def test_tiny_keeps_the_7b_structure():
    vision, language = TINY.vision, TINY.language
    assert 0 < len(vision.full_attention_layers) < vision.num_layers
    assert language.num_query_groups < language.num_attention_heads
    assert sum(language.mrope_section) == language.head_dim // 2
    assert language.vocab_size == 4096
    TINY.validate_parallel(ParallelConfig(tensor_parallel=2, sequence_parallel=True))
    TINY.validate_parallel(ParallelConfig(pipeline_parallel=2, first_pipeline_stage_language_layers=1))


SIZES = {
    "vision": ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "full_attention_layers"),
    "language": ("num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "ffn_hidden_size",
                 "vocab_size", "mrope_section"),
}


def test_tiny_differs_from_the_7b_only_in_sizes_and_init():
    full = mimo_vl_7b(image_token_id=5, video_token_id=6)
    for part, sizes in SIZES.items():
        ours, theirs = dataclasses.asdict(getattr(TINY, part)), dataclasses.asdict(getattr(full, part))
        assert {name for name in ours if ours[name] != theirs[name]} == set(sizes), part
    assert TINY.projector.ffn_hidden_size == TINY.vision.merged_hidden_size
    assert (TINY.projector.norm_eps, TINY.dtype) == (full.projector.norm_eps, full.dtype)
    # At width 64 the 7B's 0.02 leaves attention near-uniform through the demo's budget (see tiny's docstring).
    assert (TINY.init_method_std, full.init_method_std) == (0.1, 0.02)


def test_the_registry_builds_every_preset():
    assert set(PRESETS) == {"tiny", "mimo_vl_7b"}
    assert model_preset("tiny", image_token_id=5, video_token_id=6, dtype="bfloat16") == dataclasses.replace(TINY, dtype="bfloat16")
    with pytest.raises(ValueError, match=r"unknown model preset 'small': choose one of \['mimo_vl_7b', 'tiny'\]"):
        model_preset("small", image_token_id=5, video_token_id=6)


def test_uneven_pipeline_split_and_padded_vocab():
    uneven = ParallelConfig(pipeline_parallel=2, first_pipeline_stage_language_layers=1)
    assert TINY.layers_per_pipeline_stage(ParallelConfig(pipeline_parallel=4, first_pipeline_stage_language_layers=1)) == [1, 1, 1, 1]
    assert TINY.layers_per_pipeline_stage(uneven) == [1, 3]
    assert TINY.layers_per_pipeline_stage(ParallelConfig(pipeline_parallel=2)) == [2, 2]
    assert dataclasses.replace(TINY.language, vocab_size=4095).padded_vocab_size(2) == 4096


@pytest.mark.parametrize(
    "parallel, message",
    [
        (dict(tensor_parallel=3), "vision.num_attention_heads=4 is not divisible by ParallelConfig.tensor_parallel=3"),
        (dict(tensor_parallel=4), "language.num_query_groups=2 is not divisible by ParallelConfig.tensor_parallel=4"),
        (dict(pipeline_parallel=3), "language.num_layers=4 is not divisible by ParallelConfig.pipeline_parallel=3"),
        (dict(pipeline_parallel=3, first_pipeline_stage_language_layers=1), "do not split evenly"),
        (dict(pipeline_parallel=2, first_pipeline_stage_language_layers=4), "must be below the LLM's 4 layers"),
        (dict(context_parallel=4, context_parallel_comm="a2a"),
         r"num_query_groups / tensor_parallel=2 is not divisible by ParallelConfig.context_parallel=4; the a2a"),
        (dict(tensor_parallel=2, context_parallel=2, context_parallel_comm="a2a"),
         r"num_query_groups / tensor_parallel=1 is not divisible by ParallelConfig.context_parallel=2"),
    ],
)
def test_parallel_layout_errors(parallel, message):
    with pytest.raises(ValueError, match=message):
        TINY.validate_parallel(ParallelConfig(**parallel))


def test_7b_vit_mlp_is_not_divisible_by_tp8():
    with pytest.raises(ValueError, match="vision.ffn_hidden_size=3420"):
        mimo_vl_7b(image_token_id=151655, video_token_id=151656).validate_parallel(ParallelConfig(tensor_parallel=8))


@pytest.mark.parametrize(
    "part, overrides, message",
    [
        (LanguageConfig, dict(mrope_section=(2, 3, 2)), "sums to 7, but the head dim 16 has 8 rotary pairs"),
        (LanguageConfig, dict(mrope_section=(4, 4)), "must be three positive integers"),
        (LanguageConfig, dict(num_query_groups=3), "num_attention_heads=4 is not divisible by num_query_groups=3"),
        (LanguageConfig, dict(hidden_size=66), "hidden_size=66 is not divisible by num_attention_heads=4"),
        (LanguageConfig, dict(vocab_size=0), "vocab_size must be a positive integer"),
        (VisionConfig, dict(hidden_size=72, num_attention_heads=4), "head dim 18"),
        (VisionConfig, dict(window_size=100), "window_size=100 is not divisible by patch_size"),
        (VisionConfig, dict(full_attention_layers=(3, 1)), "must be increasing"),
        (VisionConfig, dict(full_attention_layers=(1, 4)), r"in \[0, 4\)"),
        (VisionConfig, dict(num_layers=0), "num_layers must be a positive integer"),
    ],
)
def test_part_config_errors(part, overrides, message):
    base = TINY.language if part is LanguageConfig else TINY.vision
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(base, **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_token_id=4096), "image_token_id=4096 is not a token id below vocab_size 4096"),
        (dict(dtype="float16"), "dtype='float16'"),
        (dict(image_token_id=True), "image_token_id=True is not a token id"),
        (dict(video_token_id=-1), "video_token_id=-1 is not a token id below vocab_size 4096.*<\\|video_pad\\|>"),
        (dict(video_token_id=5), "video_token_id and image_token_id are both 5"),
        (dict(init_method_std=0.0), "init_method_std must be a positive finite number"),
    ],
)
def test_model_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **overrides)


def test_configs_are_keyword_only():
    with pytest.raises(TypeError):
        VLModelConfig(TINY.vision, TINY.projector, TINY.language, 5)  # noqa


def test_a_model_record_saved_before_videos_takes_the_tokenizers_video_pad():
    from megatron_vl.config.serialization import config_from_dict, config_to_dict

    saved = config_to_dict(TINY)
    del saved["video_token_id"]
    restored = config_from_dict(VLModelConfig, saved_model_fields(saved, video_pad_id=6))
    assert restored == TINY
    current = config_to_dict(dataclasses.replace(TINY, video_token_id=9))
    assert saved_model_fields(current, video_pad_id=6) == current, "a saved video_token_id is kept"
