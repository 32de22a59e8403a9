"""The exported folder's tokenizer, chat template and image processor load in transformers, build the inputs the
processor builds, and ``generate`` runs on them."""

import re

import pytest
import torch
from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils import is_torchvision_available

from checkpoints_tools import generate as generate_command
from checkpoints_tools.chat_template import CHAT_TEMPLATE
from checkpoints_tools.hf_inputs import draw_image, load_processor, multimodal_inputs
from checkpoints_tools.to_hf import export
from megatron_vl.tokenizer import load_tokenizer
from tests.checkpoints_tools.conftest import IMAGE_SETTINGS


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    directory = tmp_path_factory.mktemp("exported") / "hf"
    export(world.megatron_roots[(1, 1)], directory, progress=False)
    return directory


def test_tokenizer_and_chat_template(world, exported):
    ours = load_tokenizer(world.tokenizer_dir)
    theirs = AutoTokenizer.from_pretrained(exported)
    text = "A red circle at the top left, 47 + 38 = 85."
    assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert theirs.convert_tokens_to_ids("<|image_pad|>") == ours.image_pad_id
    assert theirs.chat_template == CHAT_TEMPLATE
    prompt = theirs.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}],
        add_generation_prompt=True, tokenize=False,
    )
    assert prompt.endswith("<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n")


def test_image_processor_keeps_the_runs_pixel_limits(exported):
    image = draw_image(500, 380, seed=1)
    theirs = AutoImageProcessor.from_pretrained(exported)(images=[image], return_tensors="pt")
    reference = Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_SETTINGS.min_pixels, max_pixels=IMAGE_SETTINGS.max_pixels
    )(images=[image], return_tensors="pt")
    assert theirs["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert int(reference["image_grid_thw"].prod()) * 14 * 14 <= IMAGE_SETTINGS.max_pixels
    assert torch.equal(theirs["pixel_values"], reference["pixel_values"])


def test_processor_inputs_drive_generate(exported):
    inputs, _ = multimodal_inputs(exported, draw_image(200, 150, seed=2), "Describe the picture.")
    grid = inputs["image_grid_thw"][0]
    assert int(inputs["mm_token_type_ids"].sum()) == int(grid.prod()) // 4
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(exported, dtype=torch.float32).eval()
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape == (1, inputs["input_ids"].shape[1] + 4)
    assert torch.equal(output[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])


@pytest.mark.skipif(not is_torchvision_available(), reason="AutoProcessor builds Qwen2.5-VL's video processor, which needs torchvision")
def test_auto_processor_loads(exported):
    processor = load_processor(exported)
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>Hi"], images=[draw_image(80, 60, 0)], return_tensors="pt")
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == int(inputs["image_grid_thw"][0].prod()) // 4


def test_pretraining_layout_has_no_chat_turn(world, exported):
    tokenizer = load_tokenizer(world.tokenizer_dir)
    inputs, _ = multimodal_inputs(exported, draw_image(112, 84, seed=3), "A red", chat=False)
    ids = inputs["input_ids"][0].tolist()
    image_tokens = int(inputs["image_grid_thw"][0].prod()) // 4
    assert ids == [
        tokenizer.vision_start_id, *[tokenizer.image_pad_id] * image_tokens, tokenizer.vision_end_id,
        *tokenizer.encode("A red"),
    ]


def test_generate_command(exported, tmp_path, capsys):
    assert generate_command.main(["--hf", str(exported), "--draw", "--max-new-tokens", "3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^generated \([1-3] tokens, [0-9.]+ s\): ", printed, re.MULTILINE), printed
    image = tmp_path / "scene.png"
    draw_image(90, 70, seed=4).save(image)
    assert generate_command.main(["--hf", str(exported), "--image", str(image), "--no-chat", "--prompt", ""]) == 0
    assert f"image: {image}" in capsys.readouterr().out
    assert generate_command.main(["--hf", str(tmp_path), "--draw"]) == 2
    assert "has no config.json" in capsys.readouterr().err
    assert generate_command.main(["--hf", str(exported), "--image", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_folder_without_chat_template_or_preprocessor_config_uses_ours_and_says_so(exported, tmp_path):
    import json
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    (bare / "chat_template.jinja").unlink()
    (bare / "preprocessor_config.json").unlink()
    tokenizer_config = json.loads((bare / "tokenizer_config.json").read_text())
    del tokenizer_config["chat_template"]
    (bare / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    image = draw_image(200, 150, seed=5)
    expected, plain_route = multimodal_inputs(exported, image, "Describe the picture.")
    inputs, route = multimodal_inputs(bare, image, "Describe the picture.", fallback_image_settings=IMAGE_SETTINGS)
    assert "megatron-vl's chat template (the folder has none)" in route and "no preprocessor_config.json" in route
    assert "megatron-vl" not in plain_route
    assert set(inputs) == set(expected)
    for key in expected:
        assert torch.equal(inputs[key], expected[key]), key
    assert sorted(path.name for path in bare.iterdir()) == sorted(
        name for name in (path.name for path in exported.iterdir()) if name not in ("chat_template.jinja", "preprocessor_config.json")
    )
