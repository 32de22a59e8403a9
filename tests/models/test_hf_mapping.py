"""The HF weight mapping: QKV interleaving, a lossless round trip over every tensor, the exported HF config."""

import pytest
import torch
from transformers import Qwen2_5_VLConfig

from megatron_vl.config.model import mimo_vl_7b
from megatron_vl.models.hf_config import to_hf_config
from megatron_vl.models.hf_mapping import from_hf, interleave_qkv, split_qkv, to_hf, weight_rules
from tests.models.vl_batches import VISION_END, VISION_START, hf_model, tiny_config


def test_qkv_interleaves_per_query_group():
    q, k, v = torch.tensor([0.0, 1, 2, 3]), torch.tensor([10.0, 11]), torch.tensor([20.0, 21])
    fused = interleave_qkv(q, k, v, num_query_groups=2)
    assert fused.tolist() == [0, 1, 10, 20, 2, 3, 11, 21]
    assert [x.tolist() for x in split_qkv(fused, num_heads=4, num_query_groups=2)] == [q.tolist(), k.tolist(), v.tolist()]


def test_round_trip_covers_every_hf_tensor():
    config = tiny_config()
    hf_state = hf_model(config).state_dict()
    ours = from_hf(hf_state, config)
    assert len(ours) == len({name for rule in weight_rules(config) for name in rule.megatron})
    back = to_hf(ours, config)
    assert back.keys() == hf_state.keys()
    for name, tensor in hf_state.items():
        assert torch.equal(back[name], tensor), name
    with pytest.raises(ValueError, match="missing"):
        to_hf({name: t for name, t in ours.items() if "layers.3." not in name}, config)


def test_hf_config_of_7b():
    config = mimo_vl_7b(image_token_id=151655, video_token_id=151656)
    hf = Qwen2_5_VLConfig(**to_hf_config(config, vision_start_token_id=151652, vision_end_token_id=151653))
    text, vision = hf.text_config, hf.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (4096, 36, 32, 8)
    assert (text.intermediate_size, text.vocab_size, text.rms_norm_eps) == (11008, 151680, 1e-5)
    assert text.rope_parameters["rope_theta"] == 640000.0 and text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (vision.depth, vision.hidden_size, vision.num_heads, vision.intermediate_size) == (32, 1280, 16, 3420)
    assert (vision.out_hidden_size, list(vision.fullatt_block_indexes), vision.window_size) == (4096, [7, 15, 23, 31], 112)
    assert (hf.image_token_id, hf.video_token_id, hf.vision_start_token_id, hf.tie_word_embeddings) == (
        151655, 151656, 151652, False
    )


def test_hf_config_needs_hf_vision_norm_eps():
    import dataclasses

    config = tiny_config()
    config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, norm_eps=1e-5))
    with pytest.raises(ValueError, match="hard-code RMSNorm eps"):
        to_hf_config(config, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)
