"""M-RoPE positions against transformers' ``Qwen2_5_VLModel.get_rope_index`` (the oracle)."""

import numpy as np
import pytest

from megatron_vl.data.mrope import mrope_position_ids
from tests.data.rope_oracle import hf_model, oracle  # noqa: F401  (hf_model is a fixture)

VISION_START, VISION_END, IMAGE_PAD, EOD = 58, 59, 60, 0


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


DOCUMENTS = {
    "text only": [40],
    "one image first": [(1, 4, 6), 12],
    "text before, between, after images of different sizes": [5, (1, 8, 4), 3, (1, 2, 2), 7, (1, 6, 10), 9],
    "tall then wide image, nothing between": [(1, 12, 2), (1, 2, 14)],
    "image last": [3, (1, 16, 16)],
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_matches_get_rope_index(hf_model, name):  # noqa: F811
    tokens, grids = build_document(DOCUMENTS[name])
    ours = mrope_position_ids(tokens, grids, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START)
    assert ours.dtype == np.int32 and ours.shape == (3, len(tokens))
    np.testing.assert_array_equal(ours, oracle(hf_model, tokens, grids, image_pad_id=IMAGE_PAD))


def test_random_documents_match(hf_model):  # noqa: F811
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
        np.testing.assert_array_equal(ours, oracle(hf_model, tokens, grids, image_pad_id=IMAGE_PAD), err_msg=str(parts))


def test_text_after_image_resumes_past_its_largest_side():
    tokens, grids = build_document([2, (1, 4, 10), 1])
    positions = mrope_position_ids(tokens, grids, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START)
    image_start = 3
    assert positions[:, image_start].tolist() == [3, 3, 3]
    after_image = image_start + 10
    assert positions[:, after_image].tolist() == [3 + 5] * 3
