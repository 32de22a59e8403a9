"""DataConfig checks itself: blend entries, batch-size divisibility, error tolerance, evaluation."""

import json

import pytest

from megatron_vl.config.data import BlendEntry, DataConfig
from megatron_vl.config.serialization import config_from_dict, config_to_dict
from megatron_vl.data.images import ImageSettings


def config(**overrides):
    values = dict(blend=[("/data/a", 1), ("/data/b", 3.0)], seq_len=128, global_batch_size=16, micro_batch_size=2)
    return DataConfig(**{**values, **overrides})


def test_pairs_become_blend_entries():
    assert config().blend == (BlendEntry(path="/data/a", weight=1), BlendEntry(path="/data/b", weight=3.0))


@pytest.mark.parametrize("blend, message", [
    ([], "blend is empty"),
    ([("/data/a", 0)], "positive finite"),
    ([("/data/a", float("nan"))], "positive finite"),
    ([("/data/a", 1), ("/data/b/../a", 2)], "more than once"),
    (["/data/a"], r"\(path, weight\) pair"),
])
def test_bad_blends_are_refused(blend, message):
    with pytest.raises(ValueError, match=message):
        config(blend=blend)


def test_data_parallel_split_of_the_global_batch():
    assert config().micro_batches_per_step(1) == 8
    assert config().micro_batches_per_step(4) == 2
    with pytest.raises(ValueError, match=r"not divisible by data-parallel size 3 x micro_batch_size 2 = 6"):
        config().micro_batches_per_step(3)
    with pytest.raises(ValueError, match="global_batch_size=16 is not divisible by micro_batch_size=3"):
        config(micro_batch_size=3)


@pytest.mark.parametrize("overrides, message", [
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(global_batch_size=True), "global_batch_size must be a positive integer, got True"),
    (dict(num_workers=-1), "num_workers"),
    (dict(max_corrupt_fraction=1.0), "max_corrupt_fraction"),
    (dict(eval_samples=10), "eval_path is not"),
    (dict(eval_path="/data/eval", eval_samples=0), "eval_samples must be a positive integer"),
])
def test_bad_fields_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_fields_are_keyword_only():
    with pytest.raises(TypeError):
        DataConfig([("/data/a", 1)], 128, 16)


def test_round_trips_through_json():
    original = config(eval_path="/data/eval", image_settings=ImageSettings(max_pixels=28 * 28 * 4096))
    saved = json.loads(json.dumps(config_to_dict(original)))
    assert config_from_dict(DataConfig, saved) == original
