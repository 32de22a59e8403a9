"""The answer of a ``gui`` document: UI element targets or actions in MiMo-VL's unified action space.

A raw ``gui`` record holds exactly one of
- ``"targets"``: UI elements to locate, all boxes ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}`` or all
  points ``{"point": [x, y], "label": ...}``; the answer is ``[{"bbox_2d": ..., "label": ...}]`` (a boxes
  segment, written by ``raw_schema.render_boxes`` like grounding) or ``[{"point_2d": [x, y], "label": ...}]``;
- ``"actions"``: ``[{"action": name, argument: value, ...}]`` with the names and arguments of ``ACTIONS``;
  the answer is that list, its arguments in ``ARGUMENT_ORDER``.
Coordinates come in pixels of the original screenshot and are written in absolute pixels of the resized one,
the image the model sees (MiMo-VL's evaluation divides them by that image's width and height).

Point convention: a point is a position in the continuous image plane, ``0 <= x <= width``,
``0 <= y <= height`` (else ``point_outside_image``). It is written as the nearest integer of
``x * new_width / width`` (halves round up), at most ``new_width - 1`` (likewise for y): an action point names
a pixel of the image the model sees, so the right and bottom edges land on the last pixel.
A ``scroll_distance`` is pixels along the scroll's axis (height for up/down, width for left/right), scaled
by that axis and rounded the same way, never below 1.

Points and actions need the resized size, so ``gui_answer`` returns a deferred segment
``{"gui": [entry, ...], "image": k, "loss": true}`` that ``render_gui`` writes once the image is loaded.
"""

from __future__ import annotations

import json
import math

from data_prep.ingest.rejects import RejectError, RejectReason

REQUIRED, OPTIONAL = "required", "optional"
ACTIONS: dict[str, dict[str, str]] = {
    "click": {"start_point": REQUIRED},
    "longpress": {"start_point": REQUIRED},
    "drag": {"start_point": REQUIRED, "end_point": REQUIRED},
    "scroll": {"direction": REQUIRED, "start_point": OPTIONAL, "scroll_distance": OPTIONAL},
    "input": {"text": REQUIRED, "start_point": OPTIONAL},
    "press": {"keys": REQUIRED},
    "open": {"app": REQUIRED},
    "appswitch": {},
    "hover": {"start_point": REQUIRED},
    "select": {"start_point": REQUIRED, "text": REQUIRED},
    "wait": {},
    "finished": {"status": REQUIRED},
}
"""MiMo-VL's action names and whether each of their arguments must be given."""
ARGUMENT_ORDER = ("start_point", "end_point", "direction", "scroll_distance", "text", "keys", "app", "status")
"""The order arguments are written in (the order of MiMo-VL's action fields), whatever the raw order."""
POINT_ARGUMENTS = ("start_point", "end_point")
TEXT_ARGUMENTS = ("text", "app", "status")
DIRECTIONS = ("up", "down", "left", "right")


def gui_answer(record: dict) -> dict:
    """The answer segment of a raw ``gui`` record (validated; coordinates still original); raises RejectError."""
    if ("targets" in record) == ("actions" in record):
        raise RejectError(RejectReason.BAD_SCHEMA, "a gui record needs exactly one of 'targets' and 'actions'")
    if "actions" in record:
        actions = record["actions"]
        if not isinstance(actions, list) or not actions:
            raise RejectError(RejectReason.BAD_GUI_ACTION, "field 'actions' must be a non-empty list of actions")
        return {"gui": [_action(action, number) for number, action in enumerate(actions)], "image": 0, "loss": True}
    targets = record["targets"]
    if not isinstance(targets, list) or not targets:
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'targets' must be a non-empty list of boxes or points")
    parsed = [_target(target, number) for number, target in enumerate(targets)]
    if all("bbox_2d" in target for target in parsed):
        return {"boxes": parsed, "image": 0, "label_field": "label", "loss": True}
    if all("point" in target for target in parsed):
        return {"gui": parsed, "image": 0, "loss": True}
    raise RejectError(
        RejectReason.BAD_SCHEMA, "field 'targets' mixes boxes and points; give one kind per record (split it in two)"
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_point(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(c) for c in value)


def _label(target: dict, number: int) -> str:
    label = target.get("label")
    if not isinstance(label, str):
        problem = "is missing" if label is None else f"must be a string, got {type(label).__name__}"
        raise RejectError(RejectReason.BAD_SCHEMA, f"target {number}: 'label' {problem}")
    if not label.strip():
        raise RejectError(RejectReason.EMPTY_TEXT, f"target {number}: 'label' is empty")
    return label


def _target(target, number: int) -> dict:
    if not isinstance(target, dict) or len(target.keys() & {"bbox_2d", "point"}) != 1:
        raise RejectError(
            RejectReason.BAD_SCHEMA, f"target {number} must have one of 'bbox_2d' and 'point', got {target!r}"
        )
    if "point" in target:
        if not _is_point(target["point"]):
            raise RejectError(
                RejectReason.BAD_SCHEMA, f"target {number}: 'point' must be [x, y], two finite numbers, got {target!r}"
            )
        return {"point": target["point"], "label": _label(target, number)}
    box = target["bbox_2d"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(c) for c in box):
        raise RejectError(
            RejectReason.BAD_SCHEMA, f"target {number}: 'bbox_2d' must be [x1, y1, x2, y2] numbers, got {target!r}"
        )
    if not (box[0] < box[2] and box[1] < box[3]):
        raise RejectError(RejectReason.BAD_SCHEMA, f"target {number}: {box} needs x1 < x2 and y1 < y2")
    return {"bbox_2d": box, "label": _label(target, number)}


def _action(action, number: int) -> dict:
    """The action with its arguments checked and in ``ARGUMENT_ORDER``."""
    name = action.get("action") if isinstance(action, dict) else None
    if not isinstance(name, str):
        raise RejectError(
            RejectReason.BAD_GUI_ACTION, f"action {number} must be an object with an 'action' name, got {action!r}"
        )
    if name not in ACTIONS:
        raise RejectError(
            RejectReason.BAD_GUI_ACTION, f"action {number}: unknown action {name!r}; choose one of {', '.join(ACTIONS)}"
        )
    arguments = ACTIONS[name]
    takes = ", ".join(argument if need == REQUIRED else f"[{argument}]" for argument, need in arguments.items())
    takes = takes or "no arguments"
    extra = sorted(action.keys() - arguments.keys() - {"action"})
    if extra:
        raise RejectError(
            RejectReason.BAD_GUI_ACTION, f"action {number} ({name}) does not take {extra}; {name} takes {takes}"
        )
    missing = [argument for argument, need in arguments.items() if need == REQUIRED and argument not in action]
    if missing:
        raise RejectError(
            RejectReason.BAD_GUI_ACTION, f"action {number} ({name}) lacks {missing}; {name} takes {takes}"
        )
    for argument in (argument for argument in arguments if argument in action):
        problem = _argument_problem(argument, action[argument])
        if problem:
            raise RejectError(
                RejectReason.BAD_GUI_ACTION,
                f"action {number} ({name}): {argument!r} {problem}, got {action[argument]!r}",
            )
    return {"action": name, **{argument: action[argument] for argument in ARGUMENT_ORDER if argument in action}}


def _argument_problem(argument: str, value) -> str | None:
    """What is wrong with an argument's value, or None."""
    if argument in POINT_ARGUMENTS:
        return None if _is_point(value) else "must be [x, y], two finite numbers"
    if argument == "direction":
        return None if value in DIRECTIONS else f"must be one of {', '.join(DIRECTIONS)}"
    if argument == "scroll_distance":
        return None if _is_number(value) and value > 0 else "must be a positive number of pixels"
    if argument == "keys":
        good = isinstance(value, list) and value and all(isinstance(key, str) and key.strip() for key in value)
        return None if good else "must be a non-empty list of key names"
    assert argument in TEXT_ARGUMENTS, argument
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _nearest(value: float) -> int:
    return math.floor(value + 0.5)


def render_gui(segment: dict, original: tuple[int, int], resized: tuple[int, int]) -> str:
    """The answer text of a ``gui`` segment in absolute pixels of the resized image.

    ``original`` and ``resized`` are (height, width). Raises RejectError for a point outside the image.
    """
    (height, width), (new_height, new_width) = original, resized

    def point(value: list, where: str) -> list[int]:
        x, y = value
        if not (0 <= x <= width and 0 <= y <= height):
            raise RejectError(
                RejectReason.POINT_OUTSIDE_IMAGE,
                f"{where} {value} lies outside the {width}x{height} (width x height) image",
            )
        # Multiply before dividing: integer coordinates then land exactly on integers when they should.
        return [
            min(new_width - 1, _nearest(x * new_width / width)), min(new_height - 1, _nearest(y * new_height / height)),
        ]

    def distance(value: float, direction: str) -> int:
        scale = new_height / height if direction in ("up", "down") else new_width / width
        return max(1, _nearest(value * scale))

    return json.dumps(_written(segment["gui"], point, distance), ensure_ascii=False)


def gui_text(segment: dict) -> str:
    """The answer text of a ``gui`` segment in original pixels (for tokenizer training)."""
    return json.dumps(_written(segment["gui"], lambda value, where: value, lambda value, direction: value),
                      ensure_ascii=False)


def _written(entries: list[dict], point, distance) -> list[dict]:
    """The answer's entries with ``point(value, where)`` and ``distance(value, direction)`` applied."""
    written = []
    for number, entry in enumerate(entries):
        if "action" not in entry:
            written.append({"point_2d": point(entry["point"], f"target {number} point"), "label": entry["label"]})
            continue
        action = dict(entry)
        for argument in POINT_ARGUMENTS:
            if argument in action:
                action[argument] = point(action[argument], f"action {number} ({action['action']}) {argument}")
        if "scroll_distance" in action:
            action["scroll_distance"] = distance(action["scroll_distance"], action["direction"])
        written.append(action)
    return written
