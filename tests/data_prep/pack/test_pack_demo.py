"""The real path: demo-corpus -> train-tokenizer -> ingest -> pack -> verify, checked against transformers."""

import numpy as np
import pytest

from data_prep import train_tokenizer
from data_prep.ingest import command as ingest
from data_prep.pack import command as pack
from data_prep.inspect.verify import verify_dataset
from megatron_vl.data.packed_format import PackedDataset
from megatron_vl.data.packed_manifest import PackedManifest
from megatron_vl.tokenizer import load_tokenizer
from tests.data_prep.cli import run_subcommand
from tests.data.rope_oracle import hf_model, oracle  # noqa: F401  (hf_model is a fixture)

SEQ_LEN = 1024


@pytest.fixture(scope="module")
def demo_packed(demo_raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_pack")
    assert run_subcommand(train_tokenizer, "--input", demo_raw, "--vocab-size", 1024, "--out", root / "tok") == 0
    assert run_subcommand(ingest, "--input", demo_raw, "--out", root / "shards", "--workers", 1,
                          "--shard-size", 20) == 0
    assert run_subcommand(pack, "--input", root / "shards", "--tokenizer", root / "tok", "--out", root / "packed",
                          "--seq-len", SEQ_LEN, "--shard-size", 4, "--workers", 2) == 0
    return root


def test_demo_corpus_packs_into_a_valid_dataset(demo_packed):
    manifest = PackedManifest.load(demo_packed / "packed")
    assert verify_dataset(demo_packed / "packed", deep=True, progress=False) == []
    assert set(manifest.tokens_per_kind) == {"caption", "interleaved", "ocr", "grounding", "cot", "text"}
    assert sum(source.samples for source in manifest.sources) == 76
    # The long interleaved documents exceed 1024 tokens and are split in parts, none is dropped.
    assert manifest.split_documents > 0 and manifest.dropped == {}
    assert manifest.num_documents > 76


def test_positions_of_packed_documents_match_get_rope_index(demo_packed, hf_model):  # noqa: F811
    tokenizer = load_tokenizer(demo_packed / "tok")
    dataset = PackedDataset(demo_packed / "packed")
    hf_model.config.image_token_id = tokenizer.image_pad_id
    compared = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        grids = iter(sample.image_grid_thw)
        for start, end in zip(sample.cu_seqlens[:-1], sample.cu_seqlens[1:]):
            tokens = sample.tokens[start:end]
            document_grids = [next(grids) for _ in range(int(np.sum(tokens == tokenizer.vision_start_id)))]
            expected = oracle(hf_model, tokens, document_grids, image_pad_id=tokenizer.image_pad_id)
            np.testing.assert_array_equal(sample.position_ids[:, start:end], expected)
            compared += bool(document_grids)
    assert compared > 20
