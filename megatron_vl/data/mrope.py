"""M-RoPE (t, h, w) position ids of one document, as Qwen2.5-VL's ``get_rope_index`` gives them.

Text tokens advance all three axes together by one per token. The merged vision tokens of an image
(one ``<|image_pad|>`` per 2x2 patch group, row-major) take positions ``p + (0, row, col)`` where
``p`` is the position the next text token would have had; text after the image continues at
``p + max(rows, cols)`` (= one past the largest position the image used, for a still image).
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
) -> np.ndarray:
    """Positions int32 [3, len(tokens)] of one document starting at 0.

    ``image_grid_thw`` lists each image's (t, h, w) in patches, in the order the images occur.
    Every image is a run of ``t*h*w / merge**2`` ``<|image_pad|>`` tokens right after a
    ``<|vision_start|>`` token.
    """
    tokens = np.asarray(tokens)
    grids = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
    merge = spatial_merge_size
    image_starts = np.flatnonzero(tokens[:-1] == vision_start_id) + 1
    image_starts = image_starts[tokens[image_starts] == image_pad_id]
    assert len(image_starts) == len(grids), (
        f"{len(image_starts)} images in the tokens but {len(grids)} grids"
    )

    positions = np.empty((3, len(tokens)), dtype=np.int32)
    next_position = 0
    cursor = 0
    for start, (t, h, w) in zip(image_starts.tolist(), grids.tolist()):
        rows, cols = h // merge, w // merge
        num_image_tokens = t * rows * cols
        assert np.all(tokens[start : start + num_image_tokens] == image_pad_id), (
            f"image at token {start} needs {num_image_tokens} <|image_pad|> tokens"
        )
        text_len = start - cursor
        positions[:, cursor:start] = np.arange(next_position, next_position + text_len)
        next_position += text_len
        frame, row, col = np.meshgrid(np.arange(t), np.arange(rows), np.arange(cols), indexing="ij")
        image = positions[:, start : start + num_image_tokens]
        image[0] = frame.ravel() + next_position
        image[1] = row.ravel() + next_position
        image[2] = col.ravel() + next_position
        next_position += max(rows, cols)
        cursor = start + num_image_tokens
    positions[:, cursor:] = np.arange(next_position, next_position + len(tokens) - cursor)
    return positions
