"""Video preprocessing equals transformers' ``Qwen2VLVideoProcessor`` (``do_sample_frames``, ``cap_pixels_per_frame``).

The processor imports torchvision, which does not import beside this machine's torch build. Its frame sampling,
size and patch arithmetic is plain Python / torch, so these tests run that code itself: the functions are taken
from the installed transformers source (``ast``) and executed without the module's imports. The resize kernel and
the whole processor are compared end to end where torchvision imports (the GPU check's machine has it).
"""

from __future__ import annotations

import ast
import math
import types

import numpy as np
import pytest
import torch
from transformers.models.qwen2_vl import configuration_qwen2_vl
from transformers.utils import is_torchvision_available

from megatron_vl.data.images import IMAGE_MEAN, IMAGE_STD
from megatron_vl.data.videos import (
    VideoSettings,
    patchify_video,
    resize_frames,
    sample_frame_indices,
    sampled_fps,
    second_per_grid_t,
    video_frame_size,
)

DEFAULT = VideoSettings()
SMALL = VideoSettings(fps=1.5, min_frames=2, max_frames=10, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 30,
                      max_video_tokens=60)


def _processor_source() -> dict[str, ast.AST]:
    path = configuration_qwen2_vl.__file__.replace("configuration_qwen2_vl.py", "video_processing_qwen2_vl.py")
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    found = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    processor = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Qwen2VLVideoProcessor")
    found.update({node.name: node for node in processor.body if isinstance(node, ast.FunctionDef)})
    return found


class _SizeOnly(ast.NodeTransformer):
    """``resize`` ends by calling torchvision with the size it computed: return that size instead."""

    def visit_Return(self, node: ast.Return) -> ast.Return:
        return ast.parse("return resized_height, resized_width").body[0]


@pytest.fixture(scope="module")
def hf():
    """transformers' ``smart_resize`` and the processor's ``sample_frames``, ``resize`` (its size) and ``patchify``."""
    source = _processor_source()
    functions = [source["smart_resize"], source["sample_frames"], _SizeOnly().visit(source["resize"]), source["patchify"]]
    for function in functions:
        function.decorator_list = []
        function.returns = None
        for argument in function.args.args + function.args.kwonlyargs:
            argument.annotation = None
    module = ast.fix_missing_locations(ast.Module(body=functions, type_ignores=[]))
    namespace = {"math": math, "torch": torch}
    exec(compile(module, "video_processing_qwen2_vl (extracted)", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def _processor(hf, settings: VideoSettings):
    """An object standing in for a configured ``Qwen2VLVideoProcessor`` as its methods read ``self``."""
    return types.SimpleNamespace(
        num_frames=None, fps=settings.fps, temporal_patch_size=settings.temporal_patch_size,
        min_frames=settings.min_frames, max_frames=settings.max_frames, max_video_tokens=settings.max_video_tokens,
    )


@pytest.mark.parametrize("settings", [DEFAULT, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("total, video_fps", [
    (2, 30.0), (3, 30.0), (7, 2.0), (30, 10.0), (31, 29.97), (90, 30.0), (250, 25.0), (1000, 24.0), (5000, 60.0),
    (40000, 30.0), (17, 0.5),
])
def test_sampled_frames_equal_the_processors(hf, settings, total, video_fps):
    metadata = types.SimpleNamespace(total_num_frames=total, fps=video_fps)
    expected = hf.sample_frames(_processor(hf, settings), metadata).tolist()
    assert sample_frame_indices(total, video_fps, settings) == expected
    assert len(expected) % settings.temporal_patch_size == 0


def test_too_few_frames_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        sample_frame_indices(1, 30.0, DEFAULT)


@pytest.mark.parametrize("settings", [DEFAULT, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("height, width, frames", [
    (480, 640, 4), (480, 640, 20), (1080, 1920, 16), (1080, 1920, 768), (100, 3000, 8), (20, 30, 2), (720, 1280, 300),
])
def test_frame_size_equals_the_processors_capped_resize(hf, settings, height, width, frames):
    size = types.SimpleNamespace(shortest_edge=settings.min_pixels, longest_edge=settings.max_pixels)
    videos = torch.empty(1, frames, 3, height, width, dtype=torch.uint8)
    expected = hf.resize(
        _processor(hf, settings), videos, size, None, factor=settings.factor,
        temporal_factor=settings.temporal_patch_size, cap_pixels_per_frame=True,
    )
    assert video_frame_size(height, width, frames, settings) == expected


def _hf_normalize(frames: torch.Tensor) -> torch.Tensor:
    """The backend's fused rescale-and-normalize: mean and std scaled by 1 / rescale_factor, then normalize."""
    mean = torch.tensor(IMAGE_MEAN) * (1.0 / (1 / 255))
    std = torch.tensor(IMAGE_STD) * (1.0 / (1 / 255))
    return (frames.to(torch.float32) - mean[:, None, None]) / std[:, None, None]


@pytest.mark.parametrize("frames, height, width", [(2, 28, 28), (5, 56, 84), (6, 84, 56), (1, 28, 56)])
def test_patches_equal_the_processors_bit_for_bit(hf, frames, height, width):
    pixels = np.random.default_rng(frames).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    patches, grid = patchify_video(pixels, DEFAULT)
    videos = _hf_normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2))[None]
    expected, *expected_grid = hf.patchify(None, videos, patch_size=14, merge_size=2, temporal_patch_size=2)
    assert grid == tuple(expected_grid)
    assert np.array_equal(patches, expected[0].numpy())


def test_seconds_per_temporal_patch_follow_the_sampled_rate():
    indices = sample_frame_indices(300, 30.0, DEFAULT)  # 10 s at 2 fps
    fps = sampled_fps(len(indices), 300, 30.0)
    assert (len(indices), fps, second_per_grid_t(fps, DEFAULT)) == (20, 2.0, 1.0)


def test_resize_keeps_a_flat_colour_and_the_frame_count():
    frames = np.full((3, 37, 53, 3), (200, 30, 90), dtype=np.uint8)
    resized = resize_frames(frames, (28, 56))
    assert resized.shape == (3, 28, 56, 3) and resized.dtype == np.uint8
    assert np.array_equal(resized, np.full((3, 28, 56, 3), (200, 30, 90), dtype=np.uint8))


def test_bad_settings_and_inputs_name_the_fix():
    with pytest.raises(ValueError, match="lower min_frames"):
        VideoSettings(min_frames=10, max_frames=4)
    with pytest.raises(ValueError, match="unknown video settings"):
        VideoSettings.from_dict({"fps": 2.0, "frames": 3})
    with pytest.raises(ValueError, match="not a multiple of 28"):
        patchify_video(np.zeros((2, 30, 28, 3), np.uint8), DEFAULT)


@pytest.mark.skipif(not is_torchvision_available(), reason="the video processor needs torchvision")
def test_whole_pipeline_equals_the_video_processor():
    from transformers import Qwen2VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:160]
    video = np.stack([
        np.clip(np.stack([(x + 7 * t) % 256, (y * 2) % 256, (x + y + t) % 256], -1) + rng.integers(-30, 30, (120, 160, 3)),
                0, 255)
        for t in range(45)
    ]).astype(np.uint8)
    settings = VideoSettings(min_pixels=28 * 28 * 8, max_pixels=28 * 28 * 20)
    processor = Qwen2VLVideoProcessor(
        min_pixels=settings.min_pixels, max_pixels=settings.max_pixels, do_sample_frames=True, fps=settings.fps,
    )
    metadata = VideoMetadata(total_num_frames=45, fps=15.0, width=160, height=120)
    expected = processor(
        videos=[video], video_metadata=[metadata], cap_pixels_per_frame=True, return_tensors="pt"
    )
    kept = video[sample_frame_indices(45, 15.0, settings)]
    frames = resize_frames(kept, video_frame_size(120, 160, len(kept), settings))
    patches, grid = patchify_video(frames, settings)
    assert [list(grid)] == expected["video_grid_thw"].tolist()
    assert np.array_equal(patches, expected["pixel_values_videos"].numpy())
