"""The answers of ``gui`` documents in a packed sample, read back from their tokens, listed and drawn.

A gui document's answer is the text the loss trains on (its tokens after the prompt), a JSON list of
MiMo-VL actions ``{"action": ...}`` or point targets ``{"point_2d": [x, y], "label": ...}`` in pixels
of the screenshot before it (box targets are shown and drawn as every grounding box is). An answer
that does not parse (a document cut by ``--long-doc split``, a broken sample) is shown as its text.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from PIL import Image, ImageDraw

from megatron_vl.data.packed_format import PackedSample
from megatron_vl.tokenizer import Tokenizer

ACTION_COLOR = (255, 0, 255)
"""Actions are drawn in magenta."""
TARGET_COLOR = (0, 160, 255)
"""Point targets are drawn in sky blue (boxes stay red, as every grounding box)."""
MARKER_RADIUS = 6
"""Half the size of a point's crosshair and the radius of its circle, in pixels."""
SCROLL_ARROW = 40
"""Length in pixels of a scroll arrow without a ``scroll_distance``."""
ARROW_HEAD = 10
"""Length in pixels of the two strokes of an arrow's head."""
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuiAnswer:
    """The answer of one gui document."""

    text: str
    """The decoded answer tokens."""
    entries: list[dict] | None
    """The actions and point targets of the parsed answer; None when it does not parse."""
    image: int | None
    """Number (in the packed sample) of the image the answer refers to: the last one before it."""


def gui_answer(sample: PackedSample, tokenizer: Tokenizer, start: int, end: int,
               images: list[tuple[int, int]]) -> GuiAnswer | None:
    """The answer of the document at tokens ``start``-``end - 1`` (``images``: its (number, first token)); None
    when nothing of it is trained on."""
    # Token j is trained on when it is the label of token j - 1 with the loss mask on.
    trained = np.flatnonzero(sample.loss_mask[start : end - 1]) + start + 1
    if not len(trained):
        return None
    text = tokenizer.decode(sample.tokens[trained].tolist())
    before = [number for number, position in images if position < trained[0]]
    return GuiAnswer(text=text, entries=_entries(text), image=before[-1] if before else None)


def _entries(text: str) -> list[dict] | None:
    """The action and point-target objects of the JSON list in ``text`` (which ends with ``<|endoftext|>``)."""
    try:
        answer = json.loads(text[text.index("[") : text.rindex("]") + 1])
    except ValueError:  # no brackets, or not JSON (json.JSONDecodeError is a ValueError)
        return None
    if not isinstance(answer, list) or not all(isinstance(entry, dict) for entry in answer):
        return None
    return [entry for entry in answer if "action" in entry or "point_2d" in entry]


def _is_point(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in value))


def _points(entry: dict) -> list[list]:
    return [entry[field] for field in ("start_point", "end_point", "point_2d") if _is_point(entry.get(field))]


def describe(entry: dict) -> str:
    """One action or point target as a person reads it, e.g. ``drag (10, 20) -> (30, 40)``."""
    if "action" not in entry:
        return f"point {_xy(entry['point_2d'])} {entry.get('label', '')!r}"
    parts = [str(entry["action"])]
    if "direction" in entry:
        parts.append(str(entry["direction"]))
    if "start_point" in entry:
        parts.append(_xy(entry["start_point"]))
    if "end_point" in entry:
        parts.append(f"-> {_xy(entry['end_point'])}")
    if "scroll_distance" in entry:
        parts.append(f"by {entry['scroll_distance']} px")
    if "keys" in entry:
        parts.append("+".join(map(str, entry["keys"])) if isinstance(entry["keys"], list) else repr(entry["keys"]))
    parts += [repr(entry[field]) for field in ("text", "app", "status") if field in entry]
    return " ".join(parts)


def _xy(point) -> str:
    return f"({point[0]}, {point[1]})" if _is_point(point) else repr(point)


def answer_lines(answer: GuiAnswer, image_sizes: list[tuple[int, int]]) -> list[str]:
    """Lines for ``inspect --sample``: each action or point target, and whether its points lie on the image
    (``image_sizes``: (width, height) of each image of the packed sample)."""
    if answer.entries is None:
        return [f"  gui answer (not JSON, shown as text): {answer.text!r}"]
    if answer.image is None:
        return [f"  gui {describe(entry)}: the document has no image" for entry in answer.entries]
    width, height = image_sizes[answer.image]
    lines = []
    for entry in answer.entries:
        inside = all(0 <= x < width and 0 <= y < height for x, y in _points(entry))
        where = f" on image {answer.image} ({width}x{height}): {'inside' if inside else 'OUTSIDE the image'}"
        lines.append(f"  gui {describe(entry)}{where if _points(entry) else ''}")
    return lines


def draw_answer(picture: Image.Image, answer: GuiAnswer) -> None:
    """Draw the answer's actions (magenta) and point targets (blue) on its screenshot, each with its name:
    points as crosshairs in circles, drags as arrows to the end point, scrolls as arrows in their direction,
    actions without a point written in the top-left corner."""
    draw = ImageDraw.Draw(picture)
    unplaced = 0
    for entry in answer.entries:
        color = ACTION_COLOR if "action" in entry else TARGET_COLOR
        point = entry.get("start_point", entry.get("point_2d"))
        if not _is_point(point):
            draw.text((2, 2 + 12 * unplaced), describe(entry), fill=color)
            unplaced += 1
            continue
        _marker(draw, point, color)
        end = entry.get("end_point")
        if entry.get("action") == "scroll" and entry.get("direction") in DIRECTIONS:
            length = entry.get("scroll_distance", SCROLL_ARROW)
            dx, dy = DIRECTIONS[entry["direction"]]
            end = [point[0] + dx * length, point[1] + dy * length]
        if _is_point(end):
            _arrow(draw, point, end, color)
        name = entry.get("action", entry.get("label", ""))
        draw.text((point[0] + MARKER_RADIUS + 2, point[1] + MARKER_RADIUS + 2), str(name), fill=color)


def _marker(draw: ImageDraw.ImageDraw, point, color) -> None:
    x, y, r = point[0], point[1], MARKER_RADIUS
    draw.line([(x - r, y), (x + r, y)], fill=color, width=1)
    draw.line([(x, y - r), (x, y + r)], fill=color, width=1)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=color, width=1)


def _arrow(draw: ImageDraw.ImageDraw, start, end, color) -> None:
    draw.line([tuple(start), tuple(end)], fill=color, width=2)
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = max(1e-9, (dx * dx + dy * dy) ** 0.5)
    ux, uy = dx / length, dy / length
    # Two strokes back from the tip, 30 degrees either side of the shaft.
    for side in (1, -1):
        back_x = end[0] - ARROW_HEAD * (ux * 0.866 - side * uy * 0.5)
        back_y = end[1] - ARROW_HEAD * (uy * 0.866 + side * ux * 0.5)
        draw.line([tuple(end), (back_x, back_y)], fill=color, width=2)
