"""Pack's work-directory records (tokenized shards, finished-shard records, the pack's identity) read back as written."""

from data_prep.pack.resume import PackIdentity, PackInput
from data_prep.pack.tokenized_shard import TokenizedDocument, TokenizedShard
from data_prep.pack.write_packed_shards import ShardRecord
from megatron_vl.data.packed_manifest import KindStats, PackSettings, ShardEntry

DOCUMENT = TokenizedDocument(key="000000004", kind="cot", origin={"file": "raw/cot.jsonl", "line": 5}, part=(2, 3),
                             offset=120, length=64, image_grids=[(1, 4, 6)], image_spans=[(1536, 2048)],
                             video_grids=[(2, 2, 4)], video_seconds=[1.5], video_spans=[[(4096, 90), (4608, 95)]])


def test_tokenized_shard_round_trip_and_layout():
    shard = TokenizedShard(input=1, shard="samples-000003.tar", shard_path="/data/samples-000003.tar", samples=7,
                           split_documents=1, dropped={"longer_than_seq_len": 2}, documents=[DOCUMENT])
    assert TokenizedShard.from_json(shard.to_json()) == shard
    assert shard.to_json().startswith('{"documents": [{"image_grids": [[1, 4, 6]], "image_spans": [[1536, 2048]], '
                                      '"key": "000000004", "kind": "cot", "length": 64, "offset": 120, '
                                      '"origin": {"file": "raw/cot.jsonl", "line": 5}, "part": [2, 3], '
                                      '"video_grids": [[2, 2, 4]], "video_seconds": [1.5], '
                                      '"video_spans": [[[4096, 90], [4608, 95]]]}], '
                                      '"dropped": {"longer_than_seq_len": 2}, "input": 1')


def test_shard_record_round_trip():
    record = ShardRecord(
        entry=ShardEntry(name="packed-000002.tar", num_samples=3, bytes=10240, sha256="a" * 64, index_sha256="b" * 64),
        tokens_per_kind={"cot": KindStats(documents=2, tokens=100, loss_tokens=40)}, num_documents=2,
        histogram_counts=[0, 2],
    )
    assert ShardRecord.from_json(record.to_json()) == record


def test_pack_identity_round_trip():
    identity = PackIdentity(seq_len=1024, tokenizer_fingerprint="f" * 64,
                            pack_settings=PackSettings(seed=1, window=50, shard_size=8, long_doc="drop"),
                            sources=[PackInput(path="/data/cot", ingest_manifest_sha256="c" * 64)])
    assert PackIdentity.from_json(identity.to_json()) == identity
