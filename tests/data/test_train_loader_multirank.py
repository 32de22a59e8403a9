"""Loader state across data-parallel sizes on real gloo ranks: equal to the single-rank run, counts summed."""

import itertools

import torch.distributed as dist

from megatron_vl.data.train_loader import TrainLoader
from tests.data.packed_corpus import PackedCorpus, damage
from tests.multirank import run_ranks


def take_rows(loader, steps):
    batches = iter(loader)
    return [
        [row for batch in itertools.islice(batches, loader.micro_batches_per_step) for row in batch.sample_ids]
        for _ in range(steps)
    ]


def data_parallel_run(corpus: PackedCorpus, blend, single_rank_state):
    """On each rank: two fresh steps and the state after them; then two steps resumed from a single-rank state."""
    rank, size = dist.get_rank(), dist.get_world_size()
    config = corpus.config(blend=blend)
    fresh = TrainLoader(config, tokenizer_fingerprint=corpus.tokenizer_fingerprint, data_parallel_rank=rank,
                        data_parallel_size=size)
    fresh_rows = take_rows(fresh, 2)
    resumed = TrainLoader(config, tokenizer_fingerprint=corpus.tokenizer_fingerprint, data_parallel_rank=rank,
                          data_parallel_size=size)
    resumed.load_state_dict(single_rank_state)
    return fresh_rows, fresh.state_dict(), take_rows(resumed, 2)


def test_resume_across_data_parallel_sizes(packed_corpus, tmp_path):
    captions = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    blend = [(str(captions), 1.0), (str(packed_corpus.mixed), 3.0)]
    single = TrainLoader(packed_corpus.config(blend=blend), tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint)
    clean_rows = take_rows(single, 4)
    # A corrupt sample that only rank 1 of 2 reads: its count must reach every rank's state.
    bad_row = next(k for k, (dataset, _) in enumerate(clean_rows[1]) if dataset == 0 and k >= 4)
    damage(captions, clean_rows[1][bad_row][1], "img0.png")

    single = TrainLoader(packed_corpus.config(blend=blend), tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint)
    reference = take_rows(single, 2)
    state_after_two = single.state_dict()
    reference += take_rows(single, 2)
    assert state_after_two["datasets"][0]["skipped"] == 1

    results = run_ranks(data_parallel_run, 2, packed_corpus, blend, state_after_two)
    for step in range(2):
        assert results[0][0][step] + results[1][0][step] == reference[step]
        assert results[0][2][step] + results[1][2][step] == reference[2 + step]
    assert results[0][1] == results[1][1] == state_after_two

    resumed = TrainLoader(packed_corpus.config(blend=blend), tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint)
    resumed.load_state_dict(results[1][1])
    assert take_rows(resumed, 2) == reference[2:]
