"""Shard limits: a plain integer counts samples, anything else is a byte size read as the other tools read one."""

import pytest

from data_prep.sample_shards.writer import ShardLimit


@pytest.mark.parametrize("text, limit", [
    ("1000", ShardLimit(samples=1000)),
    (" 7 ", ShardLimit(samples=7)),
    ("512MB", ShardLimit(bytes=512 * 10**6)),
    ("1GiB", ShardLimit(bytes=2**30)),
    ("64kB", ShardLimit(bytes=64_000)),
    ("64KB", ShardLimit(bytes=64_000)),
    ("1.5GB", ShardLimit(bytes=1_500_000_000)),
])
def test_shard_sizes_are_read(text, limit):
    assert ShardLimit.parse(text) == limit


@pytest.mark.parametrize("text, message", [
    ("0", r"ShardLimit.samples must be a positive integer or None, got 0"),
    ("12 parsecs", r"shard size '12 parsecs' is neither a sample count .* nor a byte size"),
    ("0MB", r"shard size '0MB' is neither"),
])
def test_bad_shard_sizes_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        ShardLimit.parse(text)
