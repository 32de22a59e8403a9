"""Batched generation: left-padded rows of different lengths and image sizes generate what each generates alone."""

import pytest

from checkpoints_tools.batched_generation import BatchedGenerator
from checkpoints_tools.hf_inputs import InputBuilder, draw_image, multimodal_inputs
from checkpoints_tools.to_hf import export
from tests.checkpoints_tools.conftest import IMAGE_SETTINGS


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    directory = tmp_path_factory.mktemp("exported") / "hf"
    export(world.megatron_roots[(1, 1)], directory, progress=False)
    return directory


def test_a_batch_generates_what_each_row_generates_alone(exported):
    generator = BatchedGenerator(exported)
    images = [[draw_image(200, 150, seed=1)], [draw_image(84, 140, seed=2), draw_image(56, 56, seed=3)], []]
    prompts = ["Describe the picture.", "A red circle at the top left and a blue square", "What is 47 + 38?"]
    batch = generator.generate(images, prompts, max_new_tokens=6)
    alone = [generator.generate([row], [prompt], max_new_tokens=6)[0] for row, prompt in zip(images, prompts)]
    assert [item.token_ids for item in batch] == [item.token_ids for item in alone]
    assert [item.text for item in batch] == [item.text for item in alone]
    assert len({item.token_ids for item in batch}) > 1, "the rows' continuations differ, so a mix-up would show"
    assert all(1 <= item.tokens <= 6 for item in batch)


def test_a_batch_is_padded_on_the_left_and_one_row_is_multimodal_inputs(exported):
    builder = InputBuilder(exported)
    assert builder.image_settings == IMAGE_SETTINGS
    image = draw_image(200, 150, seed=1)
    batch = builder([[image], [draw_image(56, 56, seed=3)]], ["Describe the picture.", "A red"])
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[1, 0]
    alone, _ = multimodal_inputs(exported, image, "Describe the picture.")
    length = alone["input_ids"].shape[1]
    assert batch["input_ids"].shape[1] == length
    assert (batch["input_ids"][0] == alone["input_ids"][0]).all()
    assert batch["image_grid_thw"].shape[0] == 2
