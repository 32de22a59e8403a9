import dataclasses
import json

import pytest

from megatron_vl.config.model import VLModelConfig, mimo_vl_7b, tiny
from megatron_vl.config.serialization import config_from_dict, config_to_dict


@pytest.mark.parametrize("preset", [tiny, mimo_vl_7b])
def test_model_config_round_trips_through_json(preset):
    config = preset(image_token_id=7, video_token_id=8, dtype="bfloat16")
    restored = config_from_dict(VLModelConfig, json.loads(json.dumps(config_to_dict(config))))
    assert restored == config
    assert isinstance(restored.vision.full_attention_layers, tuple)


def test_unknown_field_is_named():
    data = config_to_dict(tiny(image_token_id=7, video_token_id=8))
    data["language"]["num_layer"] = 3
    with pytest.raises(ValueError, match=r"VLModelConfig\.language has missing or unknown fields \(missing \[\], unknown \['num_layer'\]\)"):
        config_from_dict(VLModelConfig, data)


def test_nested_records_lists_tuples_and_dicts_come_back_typed():
    from megatron_vl.data.packed_manifest import KindStats

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Record:
        stats: dict[str, KindStats]
        spans: list[tuple[int, int]]
        history: list[KindStats]
        note: str | None = None

    original = Record(stats={"ocr": KindStats(tokens=3)}, spans=[(0, 5), (5, 2)], history=[KindStats(images=1)])
    restored = config_from_dict(Record, json.loads(json.dumps(config_to_dict(original))))
    assert restored == original and isinstance(restored.spans[0], tuple)
    with pytest.raises(ValueError, match=r"Record has missing or unknown fields \(missing \['history'\], unknown \[\]\)"):
        config_from_dict(Record, {"stats": {}, "spans": []})
    with pytest.raises(ValueError, match=r"Record.stats\['ocr'\] has missing or unknown fields .*unknown \['token'\]"):
        config_from_dict(Record, {"stats": {"ocr": {"token": 1}}, "spans": [], "history": []})
