"""The ViT's attention windows over several packed images: the window order of the patches, the window and
frame segments, and each patch's 2D position.

The image processor emits each image's patches in merge-group order: the ``m x m`` patches of one merged
token are consecutive, merged tokens run row-major. The ViT regroups merged tokens window by window
(``window x window`` merged tokens, smaller at the right and bottom edges) so that each window is one
contiguous attention segment; full-attention layers use one segment per frame instead, which the
regrouping keeps contiguous because it never moves a token across frames.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class VisionWindows:
    """The patches of one batch of images in window order, with both segmentations (all tensors on the CPU)."""

    patch_order: torch.Tensor
    """[num_patches] long: the ViT's sequence position ``i`` holds input patch ``patch_order[i]``."""
    window_cu_seqlens: torch.Tensor
    """int32 [num_windows + 1]: window segments in the ViT's (window) order."""
    frame_cu_seqlens: torch.Tensor
    """int32 [num_frames + 1]: whole-frame segments, for the full-attention layers."""
    positions: torch.Tensor
    """[num_patches, 2] long: (row, column) of each input patch within its image, in input order."""


def _cu_seqlens(lengths: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)


def vision_windows(image_grid_thw: torch.Tensor, *, spatial_merge_size: int, window_merged_patches: int) -> VisionWindows:
    """The windows of images with grids ``image_grid_thw`` [num_images, 3] = (frames, rows, columns) in patches."""
    m = spatial_merge_size
    group = m * m
    unit_orders, window_lengths, frame_lengths, positions = [], [], [], []
    units_before = 0
    for frames, rows, cols in image_grid_thw.tolist():
        if rows % m or cols % m:
            raise ValueError(
                f"image grid {frames}x{rows}x{cols} patches is not divisible by spatial_merge_size={m}; "
                "resize images with the Qwen2-VL image processor (sides are multiples of patch x merge)"
            )
        unit_rows, unit_cols = rows // m, cols // m
        frame, row, col = torch.meshgrid(
            torch.arange(frames), torch.arange(unit_rows), torch.arange(unit_cols), indexing="ij"
        )
        windows_per_row = -(-unit_cols // window_merged_patches)
        windows_per_frame = -(-unit_rows // window_merged_patches) * windows_per_row
        window = (
            frame * windows_per_frame
            + (row // window_merged_patches) * windows_per_row
            + col // window_merged_patches
        ).flatten()
        # A stable sort by window keeps row-major order inside each window.
        unit_orders.append(torch.sort(window, stable=True).indices + units_before)
        counts = torch.bincount(window, minlength=frames * windows_per_frame)
        window_lengths.append(counts[counts > 0] * group)
        frame_lengths.append(torch.full((frames,), rows * cols))
        sub_row, sub_col = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        patch_row = (row.flatten()[:, None] * m + sub_row.flatten()).flatten()
        patch_col = (col.flatten()[:, None] * m + sub_col.flatten()).flatten()
        positions.append(torch.stack([patch_row, patch_col], dim=-1))
        units_before += frames * unit_rows * unit_cols
    unit_order = torch.cat(unit_orders)
    return VisionWindows(
        patch_order=(unit_order[:, None] * group + torch.arange(group)).flatten(),
        window_cu_seqlens=_cu_seqlens(torch.cat(window_lengths)),
        frame_cu_seqlens=_cu_seqlens(torch.cat(frame_lengths)),
        positions=torch.cat(positions),
    )
