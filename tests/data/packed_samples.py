"""Small packed samples and manifests for the reader and writer tests of the packed format."""

import dataclasses
import io

import numpy as np
from PIL import Image

from data_prep.pack.packed_shard_writer import save_manifest, write_shard
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import DocumentSource, PackedDocument, PackedSample, sample_key, shard_name
from megatron_vl.data.packed_manifest import KindStats, LengthHistogram, PackedManifest, PackSettings

SEQ_LEN = 32


def png(height, width, color):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def packed_document(kind, length):
    return PackedDocument(kind=kind, source=DocumentSource(input=0, shard="samples-000000.tar", key="000000000"),
                          origin={"file": "raw.jsonl", "line": 1}, part=(1, 1), length=length, num_images=0,
                          loss_tokens=0)


def make_sample(seed):
    rng = np.random.default_rng(seed)
    first = int(rng.integers(5, 20))
    seq_lens = np.array([first, SEQ_LEN - first - 3], dtype=np.int32)
    tokens = rng.integers(0, 100, SEQ_LEN).astype(np.int32)
    return PackedSample(
        tokens=tokens,
        labels=np.roll(tokens, -1),
        loss_mask=(rng.random(SEQ_LEN) < 0.5).astype(np.uint8),
        position_ids=np.tile(np.arange(SEQ_LEN, dtype=np.int32), (3, 1)),
        seq_lens=seq_lens,
        images=[png(28, 56, (seed, 0, 0)), png(56, 28, (0, seed, 0))],
        image_grid_thw=[(1, 2, 4), (1, 4, 2)],
        documents=[packed_document("caption", int(n)) for n in seq_lens],
        num_padding=3,
    )


def make_video_sample(seed):
    """``make_sample(seed)`` whose first document also holds two videos (3 and 4 frames)."""
    sample = make_sample(seed)
    documents = [dataclasses.replace(sample.documents[0], num_videos=2), *sample.documents[1:]]
    videos = [[png(28, 28, (seed, j, 9)) for j in range(3)], [png(56, 84, (j, seed, 9)) for j in range(4)]]
    return dataclasses.replace(sample, documents=documents, videos=videos, video_grid_thw=[(2, 2, 2), (2, 4, 6)],
                               second_per_grid_ts=[1.0, 2 / 3])


def assert_same(a: PackedSample, b: PackedSample):
    for field in dataclasses.fields(PackedSample):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, field.name


def make_manifest(entries, samples_per_shard):
    num_samples = sum(samples_per_shard)
    tokens = num_samples * (SEQ_LEN - 3)
    return PackedManifest(
        seq_len=SEQ_LEN, tokenizer_fingerprint="abc", special_ids={"<|image_pad|>": 7}, pad_id=0,
        image_settings=ImageSettings(), pack_settings=PackSettings(seed=0, window=10, shard_size=3, long_doc="split"),
        sources=[], shards=entries, num_samples=num_samples, num_documents=2 * num_samples,
        tokens_per_kind={"caption": KindStats(documents=2 * num_samples, tokens=tokens)},
        padding_fraction=3 / SEQ_LEN, dropped={}, split_documents=0,
        document_length_histogram=LengthHistogram(edges=[1, SEQ_LEN + 1], counts=[2 * num_samples]),
    )




def write_dataset(directory, samples_per_shard=(3, 2)):
    """Shards of ``make_sample(10 * shard + i)`` and their manifest in ``directory``."""
    entries = [
        write_shard(directory / shard_name(s), [(sample_key(s, i), make_sample(10 * s + i)) for i in range(n)])
        for s, n in enumerate(samples_per_shard)
    ]
    save_manifest(make_manifest(entries, list(samples_per_shard)), directory)
    return directory
