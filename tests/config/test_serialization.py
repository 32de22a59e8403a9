import json

import pytest

from megatron_vl.config.model import VLModelConfig, mimo_vl_7b, tiny
from megatron_vl.config.serialization import config_from_dict, config_to_dict


@pytest.mark.parametrize("preset", [tiny, mimo_vl_7b])
def test_model_config_round_trips_through_json(preset):
    config = preset(image_token_id=7, dtype="bfloat16")
    restored = config_from_dict(VLModelConfig, json.loads(json.dumps(config_to_dict(config))))
    assert restored == config
    assert isinstance(restored.vision.full_attention_layers, tuple)


def test_unknown_field_is_named():
    data = config_to_dict(tiny(image_token_id=7))
    data["language"]["num_layer"] = 3
    with pytest.raises(ValueError, match=r"VLModelConfig\.language: unknown field\(s\) \['num_layer'\]"):
        config_from_dict(VLModelConfig, data)
