"""A sample's segments to tokens and loss flags, and the long-document policy."""

import dataclasses

import numpy as np
import pytest

from data_prep.pack.document_tokens import Document, fit_to_seq_len, tokenize_sample
from data_prep.sample_shards.sample_meta import SampleImage, SampleMeta, SampleVideo
from megatron_vl.data.images import ImageSettings
from megatron_vl.tokenizer import load_tokenizer
from tests.data_prep.sample_corpus import train_tokenizer

VS, VE, PAD_IMAGE, PAD_VIDEO = 3, 4, 5, 6  # the trained tokenizer's fixed special ids


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(train_tokenizer(tmp_path_factory.mktemp("tokenizer")))


def meta(segments, images=()):
    return SampleMeta(kind="grounding", source={"file": "raw.jsonl", "line": 3}, segments=segments, images=[
        SampleImage(height=h, width=w, orig_height=h, orig_width=w, sha256="00") for h, w in images
    ])


def test_segments_become_tokens_in_order_with_their_loss(tokenizer):
    sample = meta([{"text": "find the cat", "loss": False}, {"image": 0}, {"special": "<think>", "loss": True},
                   {"text": "left box", "loss": True}], images=[(56, 84)])
    document = tokenize_sample(sample, tokenizer, ImageSettings(), where="x")
    prompt, answer = tokenizer.encode("find the cat"), tokenizer.encode("left box")
    expected = prompt + [VS] + [PAD_IMAGE] * 6 + [VE, tokenizer.think_id] + answer + [tokenizer.eod_id]
    assert document.tokens.tolist() == expected
    assert document.loss.tolist() == [0] * (len(prompt) + 8) + [1] * (len(answer) + 2)
    assert document.image_grids == [(1, 4, 6)] and document.image_refs == [0]


def test_placeholder_text_typed_by_a_user_stays_text(tokenizer):
    document = tokenize_sample(meta([{"text": "<|image_pad|><|vision_start|>", "loss": True}]), tokenizer,
                               ImageSettings(), where="x")
    assert not np.isin(document.tokens, [VS, VE, PAD_IMAGE]).any()


@pytest.mark.parametrize("sample, message", [
    (meta([{"image": 1}], images=[(56, 56)]), "refers to image 1"),
    (meta([{"text": "a", "loss": True}], images=[(56, 56)]), r"images \[0\] are not referenced"),
    (meta([{"text": "a"}]), "needs 'loss'"),
    (meta([{"special": "<|im_sep|>", "loss": False}]), "special token '<|im_sep|>'"),
    (meta([{"caption": "a"}]), "none of 'text', 'special', 'image'"),
    (meta([{"image": 0}], images=[(50, 56)]), "not a positive multiple of 28"),
])
def test_malformed_samples_are_refused(tokenizer, sample, message):
    with pytest.raises(ValueError, match=message):
        tokenize_sample(sample, tokenizer, ImageSettings(), where="shard.tar sample 7")


def document(tokens, grids):
    tokens = np.array(tokens, dtype=np.int32)
    return Document(tokens=tokens, loss=(tokens > 5).astype(np.uint8), image_grids=grids,
                    image_refs=list(range(len(grids))), kind="interleaved")


def fit(doc, seq_len, policy="split"):
    return fit_to_seq_len(doc, seq_len=seq_len, policy=policy, vision_start_id=VS, vision_end_id=VE,
                          video_pad_id=PAD_VIDEO)


def test_short_document_is_kept_whole():
    doc = document([9] * 4, [])
    assert fit(doc, 4) == ([doc], None)


def test_long_text_is_split_at_token_boundaries():
    doc = document(list(range(10, 20)), [])
    parts, reason = fit(doc, 4)
    assert reason is None
    assert [part.tokens.tolist() for part in parts] == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    assert [part.part for part in parts] == [(1, 3), (2, 3), (3, 3)]


def test_split_moves_back_to_never_cut_an_image():
    t = 9
    doc = document([t, t, VS, PAD_IMAGE, PAD_IMAGE, VE, t, t, VS, PAD_IMAGE, VE, t], [(1, 2, 4), (1, 2, 2)])
    parts, _ = fit(doc, 4)
    assert [part.tokens.tolist() for part in parts] == [
        [t, t], [VS, PAD_IMAGE, PAD_IMAGE, VE], [t, t], [VS, PAD_IMAGE, VE, t]]
    assert [part.image_grids for part in parts] == [[], [(1, 2, 4)], [], [(1, 2, 2)]]
    assert [part.image_refs for part in parts] == [[], [0], [], [1]]
    np.testing.assert_array_equal(np.concatenate([part.loss for part in parts]), doc.loss)


def test_image_longer_than_the_sequence_drops_the_document():
    doc = document([9, VS] + [PAD_IMAGE] * 4 + [VE, 9], [(1, 4, 4)])
    assert fit(doc, 5) == ([], "image_longer_than_seq_len")


def test_drop_policy_drops_every_long_document():
    assert fit(document([9] * 6, []), 5, policy="drop") == ([], "longer_than_seq_len")


def video_entry(num_frames, height, width, fps):
    return SampleVideo(num_frames=num_frames, height=height, width=width, orig_height=height, orig_width=width,
                       fps=fps, duration=num_frames / fps, sha256="00")


def video_meta(segments, videos, images=()):
    return dataclasses.replace(meta(segments, images), kind="video_caption", videos=list(videos))


def test_video_segment_becomes_its_temporal_patches_of_placeholders(tokenizer):
    # 5 frames pair into 3 temporal patches (the last frame repeated); 56x84 is 2x3 merged tokens per patch.
    sample = video_meta([{"image": 0}, {"video": 0}, {"text": "a cat", "loss": True}, {"video": 1}],
                        [video_entry(5, 56, 84, 3.0), video_entry(4, 28, 28, 2.0)], images=[(28, 56)])
    document = tokenize_sample(sample, tokenizer, ImageSettings(), where="x")
    caption = tokenizer.encode("a cat")
    expected = ([VS, PAD_IMAGE, PAD_IMAGE, VE, VS] + [PAD_VIDEO] * 18 + [VE] + caption + [VS] + [PAD_VIDEO] * 2
                + [VE, tokenizer.eod_id])
    assert document.tokens.tolist() == expected
    assert document.loss.tolist() == [0] * 24 + [1] * len(caption) + [0] * 4 + [1]
    assert document.video_grids == [(3, 4, 6), (2, 2, 2)] and document.video_refs == [0, 1]
    assert document.video_seconds == [2 / 3.0, 1.0]
    assert document.image_grids == [(1, 2, 4)]


@pytest.mark.parametrize("segments, message", [
    ([{"video": 1}], "refers to video 1"),
    ([{"text": "a", "loss": True}], r"videos \[0\] are not referenced"),
])
def test_malformed_video_samples_are_refused(tokenizer, segments, message):
    with pytest.raises(ValueError, match=message):
        tokenize_sample(video_meta(segments, [video_entry(4, 56, 56, 2.0)]), tokenizer, ImageSettings(), where="x")


def mixed_document(tokens, image_grids, video_grids):
    tokens = np.array(tokens, dtype=np.int32)
    return Document(tokens=tokens, loss=(tokens > PAD_VIDEO).astype(np.uint8), image_grids=image_grids,
                    image_refs=list(range(len(image_grids))), kind="interleaved", video_grids=video_grids,
                    video_seconds=[0.5 * (k + 1) for k in range(len(video_grids))],
                    video_refs=list(range(len(video_grids))))


def test_split_never_cuts_a_video_and_keeps_images_and_videos_apart():
    t = 9
    doc = mixed_document([t, VS, PAD_VIDEO, PAD_VIDEO, VE, VS, PAD_IMAGE, VE, t, VS, PAD_VIDEO, PAD_VIDEO, VE, t],
                         [(1, 2, 2)], [(2, 2, 2), (1, 2, 4)])
    parts, reason = fit(doc, 5)
    assert reason is None
    assert [part.tokens.tolist() for part in parts] == [
        [t, VS, PAD_VIDEO, PAD_VIDEO, VE], [VS, PAD_IMAGE, VE, t], [VS, PAD_VIDEO, PAD_VIDEO, VE, t]]
    assert [part.image_grids for part in parts] == [[], [(1, 2, 2)], []]
    assert [part.video_grids for part in parts] == [[(2, 2, 2)], [], [(1, 2, 4)]]
    assert [part.video_seconds for part in parts] == [[0.5], [], [1.0]]
    assert [part.video_refs for part in parts] == [[0], [], [1]]


@pytest.mark.parametrize("first, reason", [
    ([VS, PAD_VIDEO, PAD_VIDEO, PAD_VIDEO, PAD_VIDEO, VE], "video_longer_than_seq_len"),
    ([VS, PAD_IMAGE, PAD_IMAGE, PAD_IMAGE, PAD_IMAGE, VE], "image_longer_than_seq_len"),
])
def test_video_longer_than_the_sequence_drops_the_document_with_its_own_reason(first, reason):
    video = [VS] + [PAD_VIDEO] * 4 + [VE]
    is_video = first[1] == PAD_VIDEO
    doc = mixed_document([9] + first + [9] + video, [] if is_video else [(1, 4, 4)],
                         [(1, 4, 4)] * (2 if is_video else 1))
    assert fit(doc, 5) == ([], reason)
