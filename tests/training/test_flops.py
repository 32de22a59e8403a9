"""The MFU numerator: weight counts against transformers' Qwen2.5-VL layers, and how frozen modules,
images and document boundaries change the FLOPs of a micro-batch."""

import pytest
import torch

from megatron_vl.config.model import mimo_vl_7b
from megatron_vl.training.flops import language_layer_weights, projector_weights, training_flops, vision_layer_weights
from tests.models.vl_batches import hf_model, tiny_config

TRAIN_ALL = {"vision": False, "projector": False, "language": False}


def _matrices(module) -> int:
    return sum(param.numel() for name, param in module.named_parameters() if name.endswith("weight") and param.dim() == 2)


def test_weight_counts_match_the_hf_layers():
    config = tiny_config()
    hf = hf_model(config).model
    assert language_layer_weights(config) == _matrices(hf.language_model.layers[0])
    assert vision_layer_weights(config) == _matrices(hf.visual.blocks[0])
    assert projector_weights(config) == _matrices(hf.visual.merger)


def test_7b_step_flops_are_about_six_per_parameter_and_token():
    config = mimo_vl_7b(image_token_id=151655, video_token_id=151656)
    tokens = 8192
    flops = training_flops(config, TRAIN_ALL, torch.tensor([0, tokens]), torch.zeros(0, 3, dtype=torch.int64))
    llm_weights = config.language.num_layers * language_layer_weights(config) + config.language.hidden_size * 151680
    assert 6 * llm_weights * tokens < flops < 1.3 * 6 * llm_weights * tokens


def test_documents_images_and_freezing_change_the_flops():
    config = tiny_config()
    no_images = torch.zeros(0, 3, dtype=torch.int64)
    one_document = training_flops(config, TRAIN_ALL, torch.tensor([0, 128]), no_images)
    two_documents = training_flops(config, TRAIN_ALL, torch.tensor([0, 64, 128]), no_images)
    assert two_documents < one_document
    grid = torch.tensor([[1, 8, 8]])
    with_image = training_flops(config, TRAIN_ALL, torch.tensor([0, 128]), grid)
    assert with_image > one_document
    frozen_vision = dict(TRAIN_ALL, vision=True)
    stage1 = {"vision": True, "projector": False, "language": True}
    assert training_flops(config, stage1, torch.tensor([0, 128]), grid) < training_flops(
        config, frozen_vision, torch.tensor([0, 128]), grid) < with_image
    assert training_flops(config, stage1, torch.tensor([0, 128]), no_images) == pytest.approx(2 / 3 * one_document)


def test_a_video_counts_as_its_temporal_patches_of_images():
    config = tiny_config()
    cu_seqlens = torch.tensor([0, 128])
    no_grids = torch.zeros(0, 3, dtype=torch.int64)
    text_only = training_flops(config, TRAIN_ALL, cu_seqlens, no_grids, no_grids)
    three_frames = training_flops(config, TRAIN_ALL, cu_seqlens, torch.tensor([[1, 8, 8]] * 3))
    video = training_flops(config, TRAIN_ALL, cu_seqlens, no_grids, torch.tensor([[3, 8, 8]]))
    assert text_only == training_flops(config, TRAIN_ALL, cu_seqlens, no_grids)
    assert video == pytest.approx(three_frames) and video > text_only
    both = training_flops(config, TRAIN_ALL, cu_seqlens, torch.tensor([[1, 4, 4]]), torch.tensor([[3, 8, 8]]))
    assert both > video
