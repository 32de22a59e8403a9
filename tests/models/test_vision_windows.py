"""The ViT's window order, attention segments and 2D positions equal transformers' Qwen2.5-VL vision helpers."""

import pytest
import torch
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

from megatron_vl.models.vision_windows import vision_windows


@pytest.mark.parametrize(
    "grids",
    [
        [(1, 10, 16), (1, 6, 12)],  # partial windows at the right and bottom edges
        [(1, 16, 16)],  # a whole number of windows
        [(1, 2, 2), (2, 18, 6), (1, 8, 30)],  # smaller than a window, two frames, wide
        [(1, 6, 10), (3, 10, 16), (3, 4, 6)],  # an image then videos of three temporal patches, as VLModel packs them
    ],
)
def test_layout_matches_transformers(grids):
    grid = torch.tensor(grids)
    windows = vision_windows(grid, spatial_merge_size=2, window_merged_patches=4)
    window_index, cu_window_seqlens = get_vision_window_index(grid, 2, 112, 14)
    assert torch.equal(windows.patch_order, (window_index[:, None] * 4 + torch.arange(4)).flatten())
    assert torch.equal(windows.window_cu_seqlens, cu_window_seqlens)
    assert torch.equal(windows.frame_cu_seqlens, get_vision_cu_seqlens(grid))
    assert torch.equal(windows.positions, get_vision_position_ids(grid, 2))


def test_grid_not_divisible_by_merge_size_is_rejected():
    with pytest.raises(ValueError, match="not divisible by spatial_merge_size=2"):
        vision_windows(torch.tensor([[1, 5, 8]]), spatial_merge_size=2, window_merged_patches=4)
