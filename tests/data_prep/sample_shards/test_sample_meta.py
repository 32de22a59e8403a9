"""A sample's {key}.json: the typed record writes the JSON ingest always wrote and refuses malformed ones."""

import json

import pytest

from data_prep.sample_shards.sample_meta import SampleImage, SampleMeta

WRITTEN_BY_INGEST = (
    '{"kind":"grounding","source":{"file":"raw/g.jsonl","line":3},"images":[{"height":56,"width":84,'
    '"orig_height":60,"orig_width":90,"sha256":"00"}],"segments":[{"image":0},{"text":"Find the cat\\n",'
    '"loss":false},{"text":"[{\\"bbox_2d\\": [1, 2, 3, 4], \\"label\\": \\"cat\\"}]","loss":true}]}'
).encode()


def test_round_trip_keeps_the_bytes():
    meta = SampleMeta.from_json(WRITTEN_BY_INGEST, where="x")
    assert meta.images == [SampleImage(height=56, width=84, orig_height=60, orig_width=90, sha256="00")]
    assert meta.to_json() == WRITTEN_BY_INGEST


def changed(**fields):
    values = json.loads(WRITTEN_BY_INGEST)
    values.update(fields)
    return json.dumps(values).encode()


@pytest.mark.parametrize("data, message", [
    (b"{not json", "Expecting property name"),
    (changed(kind="video"), "kind='video'"),
    (changed(segments=[]), "segments must be a non-empty list"),
    (changed(images=[{"height": 56}]), r"its JSON.images\[0\] has missing or unknown fields \(missing \['orig_height'"),
    (changed(images={"height": 56}), r"its JSON.images must be a list"),
    (changed(images=[{"height": 0, "width": 1, "orig_height": 1, "orig_width": 1, "sha256": ""}]), "height"),
    (changed(colour="red"), r"unknown \['colour'\]"),
])
def test_malformed_json_is_refused_with_the_sample_and_the_fix(data, message):
    with pytest.raises(ValueError, match=rf"shard.tar sample 7: .*{message}.*re-run ingest"):
        SampleMeta.from_json(data, where="shard.tar sample 7")
