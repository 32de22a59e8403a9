"""The evaluation loader: the held-out sequences in stored order, split over ranks, the same every pass."""

import logging

import pytest

from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.data.packed_format import PackedDataset
from tests.data.packed_corpus import damage


def eval_loader(corpus, rank=0, size=1, **overrides):
    config = corpus.config(eval_path=str(corpus.mixed), **overrides)
    return EvalLoader(config, tokenizer_fingerprint=corpus.tokenizer_fingerprint, data_parallel_rank=rank,
                      data_parallel_size=size)


def test_first_sequences_in_order_split_over_ranks(packed_corpus):
    ranks = [eval_loader(packed_corpus, rank, 2, eval_samples=13) for rank in range(2)]
    assert [len(loader) for loader in ranks] == [3, 3] and ranks[0].num_dropped == 1
    passes = [[batch.sample_ids for batch in loader] for loader in ranks]
    order = [row for step in zip(*passes) for rows in step for row in rows]
    assert order == [(0, index) for index in range(12)]
    assert [batch.sample_ids for batch in ranks[1]] == passes[1]  # a second pass is the same
    dataset = PackedDataset(packed_corpus.mixed)
    first = next(iter(ranks[1]))
    assert first.tokens[1].tolist() == dataset[3].tokens.tolist()


def test_whole_dataset_by_default_and_the_remainder_is_reported(packed_corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="megatron_vl.data.eval_loader"):
        loader = eval_loader(packed_corpus, micro_batch_size=4, global_batch_size=8)
    assert (loader.num_samples, loader.num_dropped) == (88, 2)
    assert "uses 88 of 90 sequences" in caplog.text


def test_impossible_evaluation_sizes_are_refused(packed_corpus):
    with pytest.raises(ValueError, match="eval_samples=500 but .* holds 90 sequences"):
        eval_loader(packed_corpus, eval_samples=500)
    with pytest.raises(ValueError, match="use at least 4"):
        eval_loader(packed_corpus, 0, 2, eval_samples=3)


def test_corrupt_evaluation_sample_is_an_error(packed_corpus, tmp_path):
    mixed = packed_corpus.copy_of(packed_corpus.mixed, tmp_path / "mixed")
    damage(mixed, 1, "tokens.npy")
    config = packed_corpus.config(eval_path=str(mixed), eval_samples=4)
    with pytest.raises(ValueError, match=f"packed dataset {mixed}: no readable sample among packed-000000.tar sample 1"):
        list(EvalLoader(config, tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint))
