"""check_packed_sample: a well-formed sample passes, and each way of breaking the contract is named."""

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from data_prep.inspect.verify import verify_dataset
from data_prep.pack.packed_shard_writer import save_manifest, write_shard
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.mrope import mrope_position_ids
from megatron_vl.data.packed_format import PackedDataset, PackedSample, sample_key, shard_name
from megatron_vl.data.sample_checks import SampleContract, check_packed_sample
from megatron_vl.data.sample_reader import MicroBatchReader
from tests.data.packed_samples import packed_document

PAD, VS, IMG, VID, VE, TEXT = 0, 3, 5, 6, 4, 9
CONTRACT = SampleContract(seq_len=24, pad_id=PAD, image_pad_id=IMG, video_pad_id=VID, vision_start_id=VS,
                          vision_end_id=VE, patch_size=14, merge_size=2, temporal_patch_size=2, tokens_per_second=2)


def png(height, width):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def valid_sample() -> PackedSample:
    """Two documents (text, a 2x2-token image, text; then text only) and 4 tokens of padding."""
    first = np.array([TEXT, VS, IMG, IMG, IMG, IMG, VE, TEXT + 1, TEXT + 2, PAD], dtype=np.int32)
    second = np.array([TEXT + 3] * 9 + [PAD], dtype=np.int32)
    grids = [(1, 4, 4)]
    tokens = np.concatenate([first, second, np.full(4, PAD, np.int32)])
    labels = np.full(24, PAD, np.int32)
    labels[0:9], labels[10:19] = first[1:], second[1:]
    loss = np.zeros(24, np.uint8)
    loss[[6, 7, 8]] = 1
    loss[10:19] = 1
    positions = np.zeros((3, 24), np.int32)
    positions[:, :10] = mrope_position_ids(first, grids, image_pad_id=IMG, vision_start_id=VS)
    positions[:, 10:20] = mrope_position_ids(second, [], image_pad_id=IMG, vision_start_id=VS)
    documents = [dataclasses.replace(packed_document("interleaved", 10), num_images=1, loss_tokens=3),
                 dataclasses.replace(packed_document("text", 10), loss_tokens=9)]
    return PackedSample(tokens=tokens, labels=labels, loss_mask=loss, position_ids=positions,
                        seq_lens=np.array([10, 10], np.int32), images=[png(56, 56)], image_grid_thw=grids,
                        documents=documents, num_padding=4)


def test_a_valid_sample_passes():
    assert check_packed_sample(valid_sample(), CONTRACT) == []


def set_array(name, index, value):
    def change(sample):
        getattr(sample, name)[index] = value
        return sample
    return change


def replace(**fields):
    return lambda sample: dataclasses.replace(sample, **fields)


def replace_document(number, **fields):
    def change(sample):
        documents = list(sample.documents)
        documents[number] = dataclasses.replace(documents[number], **fields)
        return dataclasses.replace(sample, documents=documents)
    return change


@pytest.mark.parametrize("change, message", [
    (replace(labels=np.zeros(24, np.int64)), "labels.npy must be a 1-d int32 array"),
    (replace(loss_mask=np.zeros(23, np.uint8)), "array lengths differ"),
    (replace(num_padding=5), "plus 5 padding do not make 24"),
    (replace(images=[]), "0 images but 1 grids"),
    (lambda sample: dataclasses.replace(sample, documents=sample.documents[:1]), "1 document records but 2"),
    (lambda sample: dataclasses.replace(
        sample, tokens=np.zeros(30, np.int32), labels=np.zeros(30, np.int32), loss_mask=np.zeros(30, np.uint8),
        position_ids=np.zeros((3, 30), np.int32), num_padding=10), "30 tokens, manifest seq_len is 24"),
    (replace_document(1, length=9), "document at 10: record length 9 but seq_lens says 10"),
    (set_array("labels", 0, TEXT), "document at 0: labels are not the next tokens"),
    (set_array("labels", 9, TEXT), "document at 0: labels are not the next tokens"),
    (set_array("loss_mask", 1, 1), "document at 0: the loss mask covers image or video tokens"),
    (set_array("loss_mask", 19, 1),
     "document at 10: the loss mask covers image or video tokens, vision markers or the document's end"),
    (replace_document(0, num_images=2), "image and video markers do not match the grids / num_images / num_videos"),
    (replace(image_grid_thw=[(1, 4, 8)], images=[png(56, 112)]),
     "4 image and video placeholders do not match its grids"),
    (set_array("tokens", 6, TEXT), "4 image and video placeholders do not match"),
    (set_array("tokens", 2, TEXT), "a vision marker is not followed by image or video placeholders"),
    (set_array("position_ids", (1, 3), 7), "document at 0: position ids are not the document's M-RoPE positions"),
    (replace_document(1, loss_tokens=8), "document at 10: record loss_tokens 8 but the mask has 9"),
    (set_array("tokens", 21, TEXT), "padding holds tokens"),
    (set_array("loss_mask", 22, 1), "padding holds"),
    (replace(images=[png(56, 84)]), "image 0: PNG size (56, 84) does not match its grid (1, 4, 4)"),
    (replace(images=[b"not a png"]), "image 0: PNG size None"),
])
def test_each_break_of_the_contract_is_named(change, message):
    problems = check_packed_sample(change(valid_sample()), CONTRACT)
    assert any(message in problem for problem in problems), problems


def valid_video_sample() -> PackedSample:
    """Two documents (text, a video of 5 frames in 3 temporal patches of 1.5 s, a one-token image, text; then
    text only) and 3 tokens of padding."""
    first = np.array([TEXT, VS, VID, VID, VID, VE, VS, IMG, VE, TEXT + 1, PAD], dtype=np.int32)
    second = np.array([TEXT + 3] * 9 + [PAD], dtype=np.int32)
    tokens = np.concatenate([first, second, np.full(3, PAD, np.int32)])
    labels = np.full(24, PAD, np.int32)
    labels[0:10], labels[11:20] = first[1:], second[1:]
    loss = np.zeros(24, np.uint8)
    loss[[8, 9]] = 1
    loss[11:20] = 1
    positions = np.zeros((3, 24), np.int32)
    positions[:, :11] = mrope_position_ids(first, [(1, 2, 2)], image_pad_id=IMG, vision_start_id=VS,
                                           video_grid_thw=[(3, 2, 2)], second_per_grid_ts=[1.5], video_pad_id=VID)
    positions[:, 11:21] = mrope_position_ids(second, [], image_pad_id=IMG, vision_start_id=VS)
    documents = [dataclasses.replace(packed_document("interleaved", 11), num_images=1, num_videos=1, loss_tokens=2),
                 dataclasses.replace(packed_document("text", 10), loss_tokens=9)]
    return PackedSample(tokens=tokens, labels=labels, loss_mask=loss, position_ids=positions,
                        seq_lens=np.array([11, 10], np.int32), images=[png(28, 28)], image_grid_thw=[(1, 2, 2)],
                        documents=documents, num_padding=3, videos=[[png(28, 28)] * 5], video_grid_thw=[(3, 2, 2)],
                        second_per_grid_ts=[1.5])


def test_a_valid_video_sample_passes():
    sample = valid_video_sample()
    assert sample.position_ids[0, 2:5].tolist() == [2, 5, 8]  # 1.5 s per temporal patch, 2 positions per second
    assert check_packed_sample(sample, CONTRACT) == []


@pytest.mark.parametrize("change, message", [
    (replace(videos=[]), "0 videos but 1 video grids and 1 second_per_grid_ts"),
    (replace(videos=[[]]), "a video has no frames"),
    (replace(videos=[[png(28, 28)] * 7]), "video 0: 7 frames do not make its grid's 3 temporal patches"),
    (replace(videos=[[png(28, 28)] * 4 + [png(28, 56)]]), "video 0: frame PNG sizes [(28, 28), (28, 56)] do not match"),
    (replace(second_per_grid_ts=[1.0]), "document at 0: position ids are not the document's M-RoPE positions"),
    (replace(second_per_grid_ts=[-1.5]), "video 0: second_per_grid_t -1.5 is not a positive number"),
    (replace_document(0, num_videos=0), "image and video markers do not match the grids / num_images / num_videos"),
    (set_array("loss_mask", 2, 1), "document at 0: the loss mask covers image or video tokens"),
    (set_array("tokens", 4, IMG), "4 image and video placeholders do not match its grids"),
])
def test_each_break_of_the_video_contract_is_named(change, message):
    problems = check_packed_sample(change(valid_video_sample()), CONTRACT)
    assert any(message in problem for problem in problems), problems


def test_the_loader_and_verify_refuse_the_same_sample(packed_corpus, tmp_path):
    directory = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    dataset = PackedDataset(directory)
    samples = [dataset.read(0, i) for i in range(dataset.shard_sizes[0])]
    samples[1].position_ids[1, 2] += 1
    entry = write_shard(directory / shard_name(0), [(sample_key(0, i), s) for i, s in enumerate(samples)])
    save_manifest(dataclasses.replace(dataset.manifest, shards=[entry, *dataset.manifest.shards[1:]]), directory)
    reader = MicroBatchReader([PackedDataset(directory)], ImageSettings())
    reader.read(0, 0)
    with pytest.raises(ValueError, match="document at 0: position ids are not the document's M-RoPE positions"):
        reader.read(0, 1)
    assert verify_dataset(directory, deep=True, progress=False) == [
        f"{shard_name(0)} sample 1: document at 0: position ids are not the document's M-RoPE positions"
    ]


def test_a_row_without_the_room_its_document_alignment_needs_is_named():
    # Two documents of 10 tokens take 12 + 12 at alignment 4 (fits 24); at alignment 8 they need 16 + 16.
    assert check_packed_sample(valid_sample(), dataclasses.replace(CONTRACT, document_alignment=4)) == []
    problems = check_packed_sample(valid_sample(), dataclasses.replace(CONTRACT, document_alignment=8))
    assert problems == ["documents [10, 10] rounded up to multiples of the manifest's document alignment 8 need 32 "
                        "tokens, more than the row's 24"]
