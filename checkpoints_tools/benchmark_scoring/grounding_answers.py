"""Boxes read from a grounding answer and mapped from the resized image the model saw back to the original.

The model answers as MiMo-VL / Qwen2.5-VL do, ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]`` in absolute
pixels of the image its processor resized (``smart_resize`` with the folder's image settings). Boxes are read with
a pattern rather than a JSON parser, so a code fence, a truncated list or text around it still yields its boxes;
an answer with no ``"bbox_2d"`` falls back to its first bare list of four numbers.
"""

from __future__ import annotations

import re

from megatron_vl.data.images import ImageSettings, smart_resize

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_FOUR = r"\[" + ",".join([_NUMBER] * 4) + r"\]"
_BBOX_2D = re.compile(r"[\"']bbox_2d[\"']\s*:\s*" + _FOUR)
_BARE = re.compile(_FOUR)


def parse_boxes(answer: str) -> list[tuple[float, float, float, float]]:
    """Every ``"bbox_2d"`` box of ``answer`` in order, or its first bare ``[x1, y1, x2, y2]``; empty if none."""
    found = _BBOX_2D.findall(answer)
    if not found:
        bare = _BARE.search(answer)
        found = [bare.groups()] if bare else []
    return [tuple(float(value) for value in box) for box in found]


def resized_size(width: int, height: int, settings: ImageSettings) -> tuple[int, int]:
    """(width, height) of the image the model sees for an original of ``width`` x ``height``."""
    resized_height, resized_width = smart_resize(height, width, settings)
    return resized_width, resized_height


def to_original(
    box: tuple[float, float, float, float], original: tuple[int, int], resized: tuple[int, int]
) -> tuple[float, float, float, float]:
    """``box`` in pixels of the ``resized`` (width, height) image, scaled to the ``original`` one and clipped to it."""
    scale_x, scale_y = original[0] / resized[0], original[1] / resized[1]
    x1, y1, x2, y2 = box
    return (
        min(max(x1 * scale_x, 0.0), original[0]),
        min(max(y1 * scale_y, 0.0), original[1]),
        min(max(x2 * scale_x, 0.0), original[0]),
        min(max(y2 * scale_y, 0.0), original[1]),
    )
