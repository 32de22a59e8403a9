"""transformers' ``Qwen2_5_VLModel.get_rope_index``: the oracle for M-RoPE positions."""

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel


@pytest.fixture(scope="module")
def hf_model():
    """A tiny random Qwen2.5-VL with Qwen2.5-VL's tokens_per_second (2)."""
    return tiny_hf_model(tokens_per_second=2)


def tiny_hf_model(*, tokens_per_second: int):
    """A tiny random Qwen2.5-VL (get_rope_index reads only its config)."""
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            bos_token_id=0, eos_token_id=0,
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16,
                           fullatt_block_indexes=[0], tokens_per_second=tokens_per_second),
        image_token_id=60, vision_start_token_id=58, video_token_id=61,
    )
    return Qwen2_5_VLModel(config).eval()


def oracle(model, tokens, grids, *, image_pad_id, video_grids=(), second_per_grid_ts=(), video_pad_id=None):
    """Positions int [3, len(tokens)] that transformers gives for one document (``second_per_grid_ts`` as the
    float32 tensor the processor returns)."""
    input_ids = torch.from_numpy(tokens.astype(np.int64))[None]
    token_types = (input_ids == image_pad_id).int()
    if video_pad_id is not None:
        token_types += 2 * (input_ids == video_pad_id).int()
    positions, _ = model.get_rope_index(
        input_ids,
        mm_token_type_ids=token_types,
        image_grid_thw=torch.tensor(grids) if grids else None,
        video_grid_thw=torch.tensor(video_grids) if video_grids else None,
        second_per_grid_ts=torch.tensor(second_per_grid_ts, dtype=torch.float32) if video_grids else None,
        attention_mask=torch.ones_like(input_ids),
    )
    return positions[:, 0].numpy()
