"""The training loader: blend, data-parallel slices, resume, workers, manifest checks, corrupt samples."""

import dataclasses
import itertools
import json
import logging

import pytest
import torch

from megatron_vl.data.images import ImageSettings
from megatron_vl.data.train_loader import TrainLoader
from tests.data.packed_corpus import damage


def loader_of(corpus, rank=0, size=1, **overrides):
    return TrainLoader(
        corpus.config(**overrides), tokenizer_fingerprint=corpus.tokenizer_fingerprint,
        data_parallel_rank=rank, data_parallel_size=size,
    )


def take_steps(loader, steps):
    """Micro-batches of ``steps`` optimizer steps, grouped by step."""
    batches = iter(loader)
    return [list(itertools.islice(batches, loader.micro_batches_per_step)) for _ in range(steps)]


def rows(batches):
    return [sample for batch in batches for sample in batch.sample_ids]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for field in dataclasses.fields(x):
            left, right = getattr(x, field.name), getattr(y, field.name)
            assert torch.equal(left, right) if isinstance(left, torch.Tensor) else left == right, field.name


@pytest.fixture(scope="module")
def reference(packed_corpus):
    """Six steps of the single-rank run, and its loader state after each step."""
    loader = loader_of(packed_corpus)
    batches = iter(loader)
    steps, states = [], []
    for _ in range(6):
        steps.append(list(itertools.islice(batches, loader.micro_batches_per_step)))
        states.append(loader.state_dict())
    return steps, states


def test_the_stream_follows_the_blend_and_reshuffles_each_epoch(packed_corpus, reference):
    steps, states = reference
    drawn = [sum(1 for dataset, _ in rows(step) if dataset == d) for step in steps for d in (0, 1)]
    captions = sum(drawn[0::2])
    assert captions == 12 and sum(drawn[1::2]) == 36  # weights 1 : 3 over 6 steps of 8
    assert [d["drawn"] for d in states[-1]["datasets"]] == [12, 36]
    caption_rows = [index for step in steps for dataset, index in rows(step) if dataset == 0]
    assert sorted(caption_rows[:9]) == list(range(9))  # one epoch of the 9 caption sequences
    assert len(set(caption_rows[9:])) == 3 and states[-1]["datasets"][0]["epoch"] == 1
    assert states[-1]["consumed_samples"] == 48


@pytest.mark.parametrize("size", [2, 4])
def test_data_parallel_slices_partition_the_single_rank_stream(packed_corpus, reference, size):
    steps, _ = reference
    per_rank = [take_steps(loader_of(packed_corpus, rank, size), 3) for rank in range(size)]
    assert len(per_rank[0][0]) == 4 // size
    for step in range(3):
        assert sum((rows(per_rank[rank][step]) for rank in range(size)), []) == rows(steps[step])
        tokens = torch.cat([batch.tokens for rank in range(size) for batch in per_rank[rank][step]])
        assert torch.equal(tokens, torch.cat([batch.tokens for batch in steps[step]]))


def test_resumed_run_sees_the_batches_of_the_uninterrupted_one(packed_corpus, reference):
    steps, states = reference
    state = json.loads(json.dumps(states[1]))  # as a checkpoint stores it
    resumed = loader_of(packed_corpus)
    resumed.load_state_dict(state)
    assert resumed.consumed_samples == 16
    after = take_steps(resumed, 4)
    for step in range(4):
        assert_same_batches(after[step], steps[2 + step])
    assert resumed.state_dict() == states[5]


def test_resume_at_another_micro_batch_size(packed_corpus, reference):
    steps, states = reference
    resumed = loader_of(packed_corpus, 1, 2, micro_batch_size=1)
    resumed.load_state_dict(states[2])
    assert rows(take_steps(resumed, 1)[0]) == rows(steps[3])[4:]


def test_worker_processes_do_not_change_the_batches(packed_corpus, reference):
    steps, _ = reference
    with_workers = take_steps(loader_of(packed_corpus, num_workers=2, prefetch_factor=3), 2)
    for step in range(2):
        assert_same_batches(with_workers[step], steps[step])


def test_a_new_iterator_restarts_at_the_last_completed_step(packed_corpus, reference):
    steps, _ = reference
    loader = loader_of(packed_corpus)
    first = iter(loader)
    assert rows(itertools.islice(first, 4 + 2)) == rows(steps[0]) + rows(steps[1])[:4]
    with pytest.raises(ValueError, match="2 micro-batches into a step of 4"):
        loader.state_dict()
    assert rows(take_steps(loader, 1)[0]) == rows(steps[1])
    assert next(first, None) is None  # the older iterator ended


def test_state_of_another_blend_or_seed_is_refused(packed_corpus, reference):
    _, states = reference
    with pytest.raises(ValueError, match="normalised weight"):
        loader_of(packed_corpus, blend=[(packed_corpus.captions, 1.0), (packed_corpus.mixed, 1.0)]).load_state_dict(states[0])
    with pytest.raises(ValueError, match="seed 7, DataConfig.seed is 8"):
        loader_of(packed_corpus, seed=8).load_state_dict(states[0])
    with pytest.raises(ValueError, match="a different dataset"):
        loader_of(packed_corpus, blend=[(packed_corpus.mixed, 1.0), (packed_corpus.captions, 3.0)]).load_state_dict(states[0])


@pytest.mark.parametrize("overrides, field", [
    (dict(seq_len=256), "seq_len=128"),
    (dict(image_settings=ImageSettings(max_pixels=28 * 28 * 100)), "image settings"),
])
def test_dataset_made_for_another_run_is_refused(packed_corpus, overrides, field):
    with pytest.raises(ValueError, match=f"packed dataset {packed_corpus.captions}: .*{field}"):
        loader_of(packed_corpus, **overrides)


def test_dataset_of_another_tokenizer_is_refused(packed_corpus):
    with pytest.raises(ValueError, match=f"packed dataset {packed_corpus.captions}: .*tokenizer_fingerprint.*re-pack"):
        TrainLoader(packed_corpus.config(), tokenizer_fingerprint="0" * 64)


def test_corrupt_sample_is_replaced_logged_and_counted(packed_corpus, reference, tmp_path, caplog):
    steps, states = reference
    captions = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    caption_rows = [index for step in steps for dataset, index in rows(step) if dataset == 0]
    bad = caption_rows[1]
    damage(captions, bad, "img0.png")
    loader = loader_of(packed_corpus, blend=[(captions, 1.0), (packed_corpus.mixed, 3.0)])
    with caplog.at_level(logging.WARNING, logger="megatron_vl.data.train_loader"):
        damaged = take_steps(loader, 2)
    expected = [(0, caption_rows[2]) if row == (0, bad) else row for step in steps[:2] for row in rows(step)]
    assert sum((rows(step) for step in damaged), []) == expected
    [line] = [record.getMessage() for record in caplog.records if "corrupt" in record.getMessage()]
    assert str(captions) in line and f"sample {bad} of the dataset" in line and "image 0: PNG size None" in line
    counts = loader.state_dict()["datasets"][0]
    assert (counts["read"], counts["skipped"]) == (states[1]["datasets"][0]["drawn"] + 1, 1)


def test_unreadable_array_member_is_skipped_too(packed_corpus, reference, tmp_path):
    steps, _ = reference
    captions = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    bad = [index for dataset, index in rows(steps[0]) if dataset == 0][-1]
    damage(captions, bad, "tokens.npy")
    loader = loader_of(packed_corpus, blend=[(captions, 1.0), (packed_corpus.mixed, 3.0)])
    assert (0, bad) not in rows(take_steps(loader, 1)[0])
    assert loader.state_dict()["datasets"][0]["skipped"] == 1


def test_too_many_corrupt_samples_stop_the_run(packed_corpus, tmp_path):
    captions = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    for sample in (0, 3, 6):
        damage(captions, sample, "img0.png")
    loader = loader_of(packed_corpus, blend=[(captions, 1.0)], max_corrupt_fraction=0.2, corrupt_check_after=4)
    with pytest.raises(ValueError, match=rf"packed dataset {captions} .*max_corrupt_fraction=0.2.*data_prep verify {captions}"):
        take_steps(loader, 3)


def test_dataset_without_a_readable_sample_stops_the_run(packed_corpus, tmp_path):
    captions = packed_corpus.copy_of(packed_corpus.captions, tmp_path / "captions")
    for sample in range(9):
        damage(captions, sample, "meta.json")
    loader = loader_of(packed_corpus, blend=[(captions, 1.0)], max_corrupt_fraction=0.99)
    with pytest.raises(ValueError, match=rf"packed dataset {captions}: no readable sample among .*data_prep verify"):
        take_steps(loader, 1)
