"""transformers' ``Qwen2_5_VLModel.get_rope_index``: the oracle for M-RoPE positions."""

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel


@pytest.fixture(scope="module")
def hf_model():
    """A tiny random Qwen2.5-VL (get_rope_index reads only its config)."""
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            bos_token_id=0, eos_token_id=0,
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16,
                           fullatt_block_indexes=[0]),
        image_token_id=60, vision_start_token_id=58, video_token_id=61,
    )
    return Qwen2_5_VLModel(config).eval()


def oracle(model, tokens, grids, *, image_pad_id):
    """Positions int [3, len(tokens)] that transformers gives for one document."""
    input_ids = torch.from_numpy(tokens.astype(np.int64))[None]
    positions, _ = model.get_rope_index(
        input_ids,
        mm_token_type_ids=(input_ids == image_pad_id).int(),
        image_grid_thw=torch.tensor(grids) if grids else None,
        attention_mask=torch.ones_like(input_ids),
    )
    return positions[:, 0].numpy()
