"""M-RoPE positions against transformers' ``Qwen2_5_VLModel.get_rope_index`` (the oracle)."""

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

from megatron_vl.data.mrope import mrope_position_ids

VISION_START, VISION_END, IMAGE_PAD, EOD = 58, 59, 60, 0


@pytest.fixture(scope="module")
def hf_model():
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            bos_token_id=EOD, eos_token_id=EOD,
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16,
                           fullatt_block_indexes=[0]),
        image_token_id=IMAGE_PAD, vision_start_token_id=VISION_START, video_token_id=61,
    )
    return Qwen2_5_VLModel(config).eval()


def build_document(parts):
    """Tokens of a document from ``parts``: an int n is n text tokens, a tuple is an image grid."""
    rng = np.random.default_rng(len(parts))
    tokens, grids = [], []
    for part in parts:
        if isinstance(part, tuple):
            t, h, w = part
            tokens += [VISION_START] + [IMAGE_PAD] * (t * h * w // 4) + [VISION_END]
            grids.append(part)
        else:
            tokens += rng.integers(1, 50, size=part).tolist()
    return np.array(tokens + [EOD], dtype=np.int32), grids


def oracle(model, tokens, grids):
    input_ids = torch.from_numpy(tokens.astype(np.int64))[None]
    if not grids:
        return np.broadcast_to(np.arange(len(tokens)), (3, len(tokens)))
    positions, _ = model.get_rope_index(
        input_ids,
        mm_token_type_ids=(input_ids == IMAGE_PAD).int(),
        image_grid_thw=torch.tensor(grids),
        attention_mask=torch.ones_like(input_ids),
    )
    return positions[:, 0].numpy()


DOCUMENTS = {
    "text only": [40],
    "one image first": [(1, 4, 6), 12],
    "text before, between, after images of different sizes": [5, (1, 8, 4), 3, (1, 2, 2), 7, (1, 6, 10), 9],
    "tall then wide image, nothing between": [(1, 12, 2), (1, 2, 14)],
    "image last": [3, (1, 16, 16)],
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_matches_get_rope_index(hf_model, name):
    tokens, grids = build_document(DOCUMENTS[name])
    ours = mrope_position_ids(tokens, grids, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START)
    assert ours.dtype == np.int32 and ours.shape == (3, len(tokens))
    np.testing.assert_array_equal(ours, oracle(hf_model, tokens, grids))


def test_random_documents_match(hf_model):
    rng = np.random.default_rng(0)
    for _ in range(20):
        parts = []
        for _ in range(rng.integers(1, 6)):
            if rng.random() < 0.5:
                parts.append(int(rng.integers(1, 30)))
            else:
                parts.append((1, 2 * int(rng.integers(1, 9)), 2 * int(rng.integers(1, 9))))
        tokens, grids = build_document(parts)
        ours = mrope_position_ids(tokens, grids, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START)
        np.testing.assert_array_equal(ours, oracle(hf_model, tokens, grids), err_msg=str(parts))


def test_text_after_image_resumes_past_its_largest_side():
    tokens, grids = build_document([2, (1, 4, 10), 1])
    positions = mrope_position_ids(tokens, grids, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START)
    image_start = 3
    assert positions[:, image_start].tolist() == [3, 3, 3]
    after_image = image_start + 10
    assert positions[:, after_image].tolist() == [3 + 5] * 3
