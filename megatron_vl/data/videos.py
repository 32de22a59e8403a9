"""Video preprocessing for the Qwen2.5-ViT, equal to transformers' ``Qwen2VLVideoProcessor`` (with
``do_sample_frames=True`` and ``cap_pixels_per_frame=True``, the qwen-vl-utils behaviour).

The pipeline is split where the data-prep / training boundary lies, as for images (``images.py``):

    sample_frame_indices(...)            offline, in ``data_prep ingest``: which decoded frames are kept
    video_frame_size(...) + resize_frames(...)
                                         offline: every kept frame resized to one size (stored as PNG)
    patchify_video(frames)               in the training loader, on the decoded PNGs

The arithmetic follows transformers 5.23's video processor step by step:

- frames: ``n = total / video_fps * fps``, clamped to ``[min_frames, max_frames]`` and to the video's
  frames, rounded down to a multiple of ``temporal_patch_size``; frame ``i`` of ``n`` is
  ``int(i * total / n)`` (computed in float32 as ``torch.arange`` does);
- size: ``smart_resize`` with ``min_pixels`` and a per-frame cap ``max(min(max_pixels, budget * 2 // n),
  int(min_pixels * 1.05))`` where ``budget = int(max_video_tokens * 28 * 28 * 0.9)`` pixels;
- resize: torchvision's bicubic with antialiasing on uint8 frames (``torch.nn.functional.interpolate``
  on the CPU, where torchvision keeps uint8);
- normalize: ``(x - 255 * mean) / (255 * std)`` in float32 (the fused rescale-and-normalize);
- patches: temporal pairs of frames (the last frame repeated if the count is odd), merge-group order,
  each patch laid out (channel, time, row, column);
- time: ``second_per_grid_t = temporal_patch_size / sampled_fps`` with ``sampled_fps = n / total * video_fps``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from megatron_vl.config.validation import positive_int, positive_number
from megatron_vl.data.images import IMAGE_MEAN, IMAGE_STD, ImageSettings, PatchGeometry, smart_resize


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoSettings(PatchGeometry):
    """How videos are sampled, resized and cut into patches. Defaults are Qwen2.5-VL's (qwen-vl-utils and
    ``Qwen2VLVideoProcessor``)."""

    SETTINGS_NAME = "video"

    fps: float = 2.0
    """Frames sampled per second of video (before the ``min_frames`` / ``max_frames`` clamp)."""
    min_frames: int = 4
    """Fewest frames sampled from a video (fewer only if the video has fewer)."""
    max_frames: int = 768
    """Most frames sampled from a video: a longer video is sampled more sparsely, over its whole length."""
    min_pixels: int = 128 * 28 * 28
    """Frames with fewer pixels (after rounding) are scaled up to at least this many."""
    max_pixels: int = 768 * 28 * 28
    """Most pixels of one frame."""
    max_video_tokens: int = 128000
    """Total budget of one video: 90% of this many merged tokens' worth of pixels, shared by its frames."""
    max_seconds: float = 3600.0
    """Videos longer than this are refused (counted as ``video_too_long``), not cut."""
    patch_size: int = 14
    """Side of one ViT patch in pixels."""
    temporal_patch_size: int = 2
    """Frames per patch: consecutive frames are paired."""
    merge_size: int = 2
    """The projector merges ``merge_size x merge_size`` patches into one LLM token."""

    def __post_init__(self) -> None:
        for name in ("min_frames", "max_frames", "min_pixels", "max_pixels", "max_video_tokens",
                     "patch_size", "temporal_patch_size", "merge_size"):
            positive_int("VideoSettings", name, getattr(self, name))
        positive_number("VideoSettings", "fps", self.fps)
        positive_number("VideoSettings", "max_seconds", self.max_seconds)
        if self.min_frames > self.max_frames:
            raise ValueError(
                f"VideoSettings.min_frames={self.min_frames} exceeds max_frames={self.max_frames}; lower min_frames"
            )
        if self.max_frames < self.temporal_patch_size:
            raise ValueError(
                f"VideoSettings.max_frames={self.max_frames} is below one temporal patch "
                f"({self.temporal_patch_size} frames); raise max_frames"
            )
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"VideoSettings.min_pixels={self.min_pixels} exceeds max_pixels={self.max_pixels}; "
                "lower min_pixels or raise max_pixels"
            )


def sample_frame_indices(total_frames: int, video_fps: float, settings: VideoSettings) -> list[int]:
    """Which of a video's ``total_frames`` decoded frames are kept (sorted, distinct).

    Raises ValueError for a video with fewer than ``temporal_patch_size`` frames (nothing to pair).
    """
    temporal = settings.temporal_patch_size
    if total_frames < temporal:
        raise ValueError(f"the video has {total_frames} frames; at least {temporal} are needed")
    if not video_fps > 0:
        raise ValueError(f"the video's frame rate {video_fps!r} is not positive")
    max_frames = math.floor(min(settings.max_frames, total_frames) / temporal) * temporal
    count = total_frames / video_fps * settings.fps
    count = min(max(count, settings.min_frames), max_frames, total_frames)
    count = math.floor(count / temporal) * temporal
    return torch.arange(0, total_frames, total_frames / count).int().tolist()


def sampled_fps(num_sampled: int, total_frames: int, video_fps: float) -> float:
    """Frames per second of the kept frames (transformers' ``VideoMetadata.sampled_fps``)."""
    return num_sampled / total_frames * video_fps


def second_per_grid_t(fps_of_frames: float, settings: VideoSettings) -> float:
    """Seconds one temporal patch spans (the ``second_per_grid_ts`` entry of a video)."""
    return settings.temporal_patch_size / fps_of_frames


def video_frame_size(height: int, width: int, num_frames: int, settings: VideoSettings) -> tuple[int, int]:
    """The (height, width) every frame of a video of ``num_frames`` kept frames is resized to."""
    factor = settings.factor
    budget = int(settings.max_video_tokens * factor * factor * 0.9)
    max_pixels = max(min(settings.max_pixels, budget * settings.temporal_patch_size // num_frames),
                     int(settings.min_pixels * 1.05))
    per_frame = ImageSettings(
        min_pixels=settings.min_pixels, max_pixels=max_pixels, patch_size=settings.patch_size,
        temporal_patch_size=settings.temporal_patch_size, merge_size=settings.merge_size,
    )
    return smart_resize(height, width, per_frame)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 [T, H, W, 3] frames to ``size`` (height, width) as torchvision's bicubic antialiased
    resize does on the CPU: uint8 [T, height, width, 3]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"resize_frames expects uint8 [T, H, W, 3] frames, got {frames.dtype} {list(frames.shape)}")
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    channels_first = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(
        channels_first, size=list(size), mode="bicubic", align_corners=False, antialias=True
    )
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


def _normalization_table() -> np.ndarray:
    """float32 [3, 256]: the fused ``(x - 255 * mean) / (255 * std)`` of each byte value, in float32."""
    values = np.arange(256, dtype=np.float32)
    mean = (torch.tensor(IMAGE_MEAN) * 255.0).numpy()[:, None]
    std = (torch.tensor(IMAGE_STD) * 255.0).numpy()[:, None]
    return (values[None, :] - mean) / std


_NORMALIZED = _normalization_table()


def patchify_video(frames: np.ndarray, settings: PatchGeometry) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Cut resized uint8 [T, H, W, 3] frames into normalized ViT patches; only ``settings``' patch geometry is read,
    so image settings (the loader's) serve as well as video settings.

    Returns float32 [t*h*w, 3 * temporal * patch * patch] and the grid (t, h, w): ``t`` temporal patches
    of ``temporal_patch_size`` consecutive frames (the last frame repeated to fill the last one), patches
    in merge-group order within each temporal patch, each laid out (channel, time, row, column).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1:
        raise ValueError(f"patchify_video expects uint8 [T, H, W, 3] frames, got {frames.dtype} {list(frames.shape)}")
    count, height, width, _ = frames.shape
    patch, merge, temporal = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    if height % settings.factor or width % settings.factor:
        raise ValueError(
            f"frame size {height}x{width} is not a multiple of {settings.factor}; resize with video_frame_size first"
        )
    if pad := -count % temporal:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    grid_t, grid_h, grid_w = (count + pad) // temporal, height // patch, width // patch
    blocks = frames.reshape(grid_t, temporal, grid_h // merge, merge, patch, grid_w // merge, merge, patch, 3)
    # -> (t, merged row, merged col, row in group, col in group, channel, time, pixel row, pixel col)
    blocks = blocks.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    patches = np.empty(blocks.shape, dtype=np.float32)
    for channel in range(3):
        patches[..., channel, :, :, :] = _NORMALIZED[channel][blocks[..., channel, :, :, :]]
    return patches.reshape(grid_t * grid_h * grid_w, settings.patch_dim), (grid_t, grid_h, grid_w)
