"""M-RoPE positions against transformers' ``Qwen2_5_VLModel.get_rope_index`` (the oracle)."""

import numpy as np
import pytest

from megatron_vl.data.mrope import mrope_position_ids
from tests.data.rope_oracle import hf_model, oracle, tiny_hf_model  # noqa: F401  (hf_model is a fixture)

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD, EOD = 58, 59, 60, 61, 0


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


def build_video_document(parts):
    """Tokens of a document from ``parts``: an int n is n text tokens, ``("image", (t, h, w))`` an image,
    ``("video", (t, h, w), second_per_grid_t)`` a video; returns tokens, image grids, video grids, seconds."""
    rng = np.random.default_rng(len(parts))
    tokens, images, videos, seconds = [], [], [], []
    for part in parts:
        if isinstance(part, int):
            tokens += rng.integers(1, 50, size=part).tolist()
            continue
        t, h, w = part[1]
        pad = IMAGE_PAD if part[0] == "image" else VIDEO_PAD
        tokens += [VISION_START] + [pad] * (t * h * w // 4) + [VISION_END]
        if part[0] == "image":
            images.append(part[1])
        else:
            videos.append(part[1])
            seconds.append(part[2])
    return np.array(tokens + [EOD], dtype=np.int32), images, videos, seconds


def video_positions(tokens, images, videos, seconds, tokens_per_second=2):
    return mrope_position_ids(tokens, images, image_pad_id=IMAGE_PAD, vision_start_id=VISION_START,
                              video_grid_thw=videos, second_per_grid_ts=seconds, video_pad_id=VIDEO_PAD,
                              tokens_per_second=tokens_per_second)


def random_video_parts(rng, *, images: bool, videos: bool):
    """A random document: text runs, images and videos (odd temporal patch counts, fractional seconds per patch)."""
    parts = []
    for _ in range(rng.integers(1, 7)):
        choice = rng.choice([c for c, on in (("text", True), ("image", images), ("video", videos)) if on])
        side = lambda: 2 * int(rng.integers(1, 6))  # noqa: E731
        if choice == "text":
            parts.append(int(rng.integers(1, 20)))
        elif choice == "image":
            parts.append(("image", (1, side(), side())))
        else:
            # frames sampled at 0.1 .. 8 fps, stored 2 per temporal patch: 2/fps seconds per patch, 1 .. 9 patches
            fps = float(rng.choice([2.0, 4.0, 3.0, 1.3333333333333333, 0.1, 8.0, 2.5, 1.0, 6.0, 7.0]))
            parts.append(("video", (int(rng.integers(1, 10)), side(), side()), 2 / fps))
    return parts


@pytest.mark.parametrize("images, videos", [(True, False), (False, True), (True, True)],
                         ids=["images only", "videos only", "images and videos"])
def test_random_video_documents_match(hf_model, images, videos):  # noqa: F811
    rng = np.random.default_rng(1 + 2 * images + videos)
    for _ in range(40):
        parts = random_video_parts(rng, images=images, videos=videos)
        tokens, image_grids, video_grids, seconds = build_video_document(parts)
        expected = oracle(hf_model, tokens, image_grids, image_pad_id=IMAGE_PAD, video_grids=video_grids,
                          second_per_grid_ts=seconds, video_pad_id=VIDEO_PAD)
        np.testing.assert_array_equal(video_positions(tokens, image_grids, video_grids, seconds), expected,
                                      err_msg=str(parts))


@pytest.mark.parametrize("seconds", [0.5, 1.5, 2 / 3, 1.0, 0.25, 20.0, 0.1])
def test_fractional_seconds_per_patch_match(hf_model, seconds):  # noqa: F811
    parts = [4, ("video", (9, 4, 6), seconds), 3, ("image", (1, 2, 4)), ("video", (5, 2, 2), seconds), 2]
    tokens, image_grids, video_grids, all_seconds = build_video_document(parts)
    expected = oracle(hf_model, tokens, image_grids, image_pad_id=IMAGE_PAD, video_grids=video_grids,
                      second_per_grid_ts=all_seconds, video_pad_id=VIDEO_PAD)
    np.testing.assert_array_equal(video_positions(tokens, image_grids, video_grids, all_seconds), expected)


def test_tokens_per_second_is_a_parameter():
    model = tiny_hf_model(tokens_per_second=4)
    parts = [2, ("video", (7, 4, 4), 2 / 3), 5, ("image", (1, 4, 2)), 1]
    tokens, image_grids, video_grids, seconds = build_video_document(parts)
    expected = oracle(model, tokens, image_grids, image_pad_id=IMAGE_PAD, video_grids=video_grids,
                      second_per_grid_ts=seconds, video_pad_id=VIDEO_PAD)
    np.testing.assert_array_equal(video_positions(tokens, image_grids, video_grids, seconds, 4), expected)
    assert not np.array_equal(video_positions(tokens, image_grids, video_grids, seconds, 2), expected)


def test_video_time_axis_counts_seconds():
    # 4 temporal patches of 1.5 s at 2 tokens per second: temporal positions 0, 3, 6, 9 past the start.
    tokens, _, videos, seconds = build_video_document([2, ("video", (4, 2, 2), 1.5), 1])
    positions = video_positions(tokens, [], videos, seconds)
    first = 3  # two text tokens and <|vision_start|> take positions 0, 1, 2
    assert positions[0, first : first + 4].tolist() == [3, 6, 9, 12]
    assert positions[:, first + 4].tolist() == [4, 4, 4]  # <|vision_end|>: start + max(rows, cols) = 3 + 1
