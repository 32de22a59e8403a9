"""M-RoPE (t, h, w) position ids of one document, as Qwen2.5-VL's ``get_rope_index`` gives them.

Text tokens advance all three axes together by one per token. The merged vision tokens of an image
or a video (one placeholder per 2x2 patch group, row-major within each temporal patch) take
positions ``p + (time, row, col)`` where ``p`` is the position the next text token would have had.
``time`` is 0 for an image; for a video's temporal patch i it is ``int(i * tokens_per_second *
second_per_grid_t)``, so the temporal axis counts real seconds (``tokens_per_second`` per second)
whatever rate the frames were sampled at. Text after an image or a video continues at
``p + max(rows, cols)``, as transformers 5.23 does (for a video this may lie below its last
temporal positions).
"""

from __future__ import annotations

import numpy as np


def mrope_position_ids(
    tokens: np.ndarray,
    image_grid_thw,
    *,
    image_pad_id: int,
    vision_start_id: int,
    spatial_merge_size: int = 2,
    video_grid_thw=(),
    second_per_grid_ts=(),
    video_pad_id: int | None = None,
    tokens_per_second: int = 2,
) -> np.ndarray:
    """Positions int32 [3, len(tokens)] of one document starting at 0.

    ``image_grid_thw`` / ``video_grid_thw`` list each image's / video's (t, h, w) in patches, in the order
    they occur, and ``second_per_grid_ts`` each video's seconds per temporal patch. Every image is a run of
    ``t*h*w / merge**2`` ``<|image_pad|>`` tokens right after a ``<|vision_start|>`` token, every video
    such a run of ``<|video_pad|>`` tokens (``video_pad_id``, needed when there are videos).
    """
    tokens = np.asarray(tokens)
    image_grids = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
    video_grids = np.asarray(video_grid_thw, dtype=np.int64).reshape(-1, 3)
    seconds = np.asarray(second_per_grid_ts, dtype=np.float32).reshape(-1)
    assert len(seconds) == len(video_grids), "one second_per_grid_t per video"
    assert len(video_grids) == 0 or video_pad_id is not None, "videos need video_pad_id"
    grids = {image_pad_id: iter(image_grids.tolist()), video_pad_id: iter(video_grids.tolist())}
    intervals = iter(np.float32(tokens_per_second) * seconds)
    merge = spatial_merge_size
    vision_starts = np.flatnonzero(tokens[:-1] == vision_start_id) + 1
    pads = [image_pad_id] + ([video_pad_id] if len(video_grids) else [])
    vision_starts = vision_starts[np.isin(tokens[vision_starts], pads)]
    kinds = tokens[vision_starts]
    for pad, expected, what in ((image_pad_id, image_grids, "images"), (video_pad_id, video_grids, "videos")):
        found = np.count_nonzero(kinds == pad)
        assert found == len(expected), f"{found} {what} in the tokens but {len(expected)} grids"

    positions = np.empty((3, len(tokens)), dtype=np.int32)
    next_position = 0
    cursor = 0
    for start, pad in zip(vision_starts.tolist(), kinds.tolist()):
        t, h, w = next(grids[pad])
        rows, cols = h // merge, w // merge
        count = t * rows * cols
        assert np.all(tokens[start : start + count] == pad), f"vision input at token {start} needs {count} placeholders"
        text_len = start - cursor
        positions[:, cursor:start] = np.arange(next_position, next_position + text_len)
        next_position += text_len
        times = np.arange(t)
        if pad == video_pad_id:
            # float32, truncated toward zero: transformers multiplies torch.arange by a float32 interval and .long()s.
            times = (times.astype(np.float32) * next(intervals)).astype(np.int64)
        frame, row, col = np.meshgrid(times, np.arange(rows), np.arange(cols), indexing="ij")
        vision = positions[:, start : start + count]
        vision[0] = frame.ravel() + next_position
        vision[1] = row.ravel() + next_position
        vision[2] = col.ravel() + next_position
        next_position += max(rows, cols)
        cursor = start + count
    positions[:, cursor:] = np.arange(next_position, next_position + len(tokens) - cursor)
    return positions
