"""gui records: targets and MiMo-VL actions are checked, then written in pixels of the resized screenshot."""

from __future__ import annotations

import json

import pytest

from data_prep.ingest.gui_actions import ACTIONS, render_gui
from data_prep.ingest.raw_schema import RejectError, parse_document, render_boxes
from data_prep.ingest.rejects import RejectReason

# The screenshot is 400x200 (width x height) and is resized to 300x100: x scales by 0.75, y by 0.5.
ORIGINAL, RESIZED = (200, 400), (100, 300)


def gui(**fields) -> dict:
    return {"kind": "gui", "image": "screen.png", "instruction": "Turn on dark mode.", **fields}


def rendered(actions: list[dict]) -> list[dict]:
    answer = parse_document(gui(actions=actions), None).segments[2]
    return json.loads(render_gui(answer, ORIGINAL, RESIZED))


EVERY_ACTION = [
    ({"action": "click", "start_point": [100, 60]}, {"action": "click", "start_point": [75, 30]}),
    ({"action": "longpress", "start_point": [40, 20]}, {"action": "longpress", "start_point": [30, 10]}),
    ({"action": "drag", "start_point": [0, 0], "end_point": [400, 200]},
     {"action": "drag", "start_point": [0, 0], "end_point": [299, 99]}),
    ({"action": "scroll", "direction": "down", "start_point": [200, 100], "scroll_distance": 120},
     {"action": "scroll", "start_point": [150, 50], "direction": "down", "scroll_distance": 60}),
    ({"action": "scroll", "direction": "left", "scroll_distance": 40},
     {"action": "scroll", "direction": "left", "scroll_distance": 30}),
    ({"action": "scroll", "direction": "up"}, {"action": "scroll", "direction": "up"}),
    ({"text": "hello", "start_point": [2, 3], "action": "input"},
     {"action": "input", "start_point": [2, 2], "text": "hello"}),
    ({"action": "input", "text": "dark mode"}, {"action": "input", "text": "dark mode"}),
    ({"action": "press", "keys": ["ctrl", "c"]}, {"action": "press", "keys": ["ctrl", "c"]}),
    ({"action": "open", "app": "Settings"}, {"action": "open", "app": "Settings"}),
    ({"action": "appswitch"}, {"action": "appswitch"}),
    ({"action": "hover", "start_point": [8, 4]}, {"action": "hover", "start_point": [6, 2]}),
    ({"action": "select", "text": "Large", "start_point": [100, 100]},
     {"action": "select", "start_point": [75, 50], "text": "Large"}),
    ({"action": "wait"}, {"action": "wait"}),
    ({"action": "finished", "status": "success"}, {"action": "finished", "status": "success"}),
]


def test_every_action_is_written_in_resized_pixels_with_its_arguments_in_order():
    assert {raw["action"] for raw, _ in EVERY_ACTION} == set(ACTIONS)
    raws, expected = zip(*EVERY_ACTION)
    answer = rendered(list(raws))
    assert answer == list(expected)
    assert [list(action) for action in answer] == [list(action) for action in expected]  # key order too


def test_points_round_to_the_nearest_pixel_halves_up_and_stay_on_the_image():
    # x 1 * 0.75 = 0.75 -> 1, y 1 * 0.5 = 0.5 -> 1 (halves up); x 2 * 0.75 = 1.5 -> 2; the far edges -> last pixel.
    assert [a["start_point"] for a in rendered([
        {"action": "click", "start_point": [1, 1]}, {"action": "click", "start_point": [2, 2.9]},
        {"action": "click", "start_point": [399.5, 199.5]}, {"action": "click", "start_point": [400, 0]},
    ])] == [[1, 1], [2, 1], [299, 99], [299, 0]]
    assert rendered([{"action": "scroll", "direction": "up", "scroll_distance": 0.4}])[0]["scroll_distance"] == 1


def test_point_targets_and_box_targets():
    points = parse_document(gui(targets=[{"point": [100, 60], "label": "Dark mode"}, {"point": [400, 200],
                                                                                       "label": "corner"}]), None)
    assert points.segments[:2] == [{"image": 0}, {"text": "Turn on dark mode.\n", "loss": False}]
    assert points.segments[2]["loss"] is True
    assert json.loads(render_gui(points.segments[2], ORIGINAL, RESIZED)) == [
        {"point_2d": [75, 30], "label": "Dark mode"}, {"point_2d": [299, 99], "label": "corner"},
    ]
    boxes = parse_document(gui(targets=[{"bbox_2d": [100, 60, 141, 81], "label": "Dark mode"}]), None)
    # Box targets are grounding boxes: the smallest integer box covering the original one.
    assert json.loads(render_boxes(boxes.segments[2], ORIGINAL, RESIZED)) == [
        {"bbox_2d": [75, 30, 106, 41], "label": "Dark mode"},
    ]


def test_texts_for_tokenizer_training_keep_original_pixels():
    document = parse_document(gui(actions=[{"action": "drag", "start_point": [1.5, 2], "end_point": [30, 40]}]), None)
    assert list(document.texts()) == [
        "Turn on dark mode.\n", '[{"action": "drag", "start_point": [1.5, 2], "end_point": [30, 40]}]',
    ]
    points = parse_document(gui(targets=[{"point": [5, 6], "label": "OK"}]), None)
    assert list(points.texts())[1] == '[{"point_2d": [5, 6], "label": "OK"}]'


BAD_ACTIONS = {
    "unknown name": ({"action": "tap", "start_point": [1, 1]}, "unknown action 'tap'"),
    "no name": ({"start_point": [1, 1]}, "must be an object with an 'action' name"),
    "not an object": ("click", "must be an object with an 'action' name"),
    "missing argument": ({"action": "drag", "start_point": [1, 1]}, "lacks ['end_point']"),
    "extra argument": ({"action": "click", "start_point": [1, 1], "text": "x"}, "does not take ['text']"),
    "argument of a no-argument action": ({"action": "wait", "seconds": 2}, "does not take ['seconds']"),
    "point of three numbers": ({"action": "click", "start_point": [1, 2, 3]}, "must be [x, y]"),
    "point of a string": ({"action": "click", "start_point": ["1", 2]}, "must be [x, y]"),
    "point of a bool": ({"action": "hover", "start_point": [True, 2]}, "must be [x, y]"),
    "infinite point": ({"action": "longpress", "start_point": [float("inf"), 2]}, "must be [x, y]"),
    "bad direction": ({"action": "scroll", "direction": "sideways"}, "must be one of up, down, left, right"),
    "zero scroll distance": ({"action": "scroll", "direction": "up", "scroll_distance": 0}, "positive number"),
    "empty text": ({"action": "input", "text": "  "}, "non-empty string"),
    "text not a string": ({"action": "select", "start_point": [1, 1], "text": 3}, "non-empty string"),
    "empty keys": ({"action": "press", "keys": []}, "non-empty list of key names"),
    "keys with an empty key": ({"action": "press", "keys": ["ctrl", ""]}, "non-empty list of key names"),
    "keys not a list": ({"action": "press", "keys": "home"}, "non-empty list of key names"),
    "empty app": ({"action": "open", "app": ""}, "non-empty string"),
    "no status": ({"action": "finished"}, "lacks ['status']"),
}


@pytest.mark.parametrize("case", BAD_ACTIONS)
def test_bad_actions_are_rejected_with_what_is_wrong(case):
    action, detail = BAD_ACTIONS[case]
    with pytest.raises(RejectError) as error:
        parse_document(gui(actions=[{"action": "wait"}, action]), None)
    assert error.value.reason is RejectReason.BAD_GUI_ACTION
    assert detail in error.value.detail and "action 1" in error.value.detail


@pytest.mark.parametrize("actions", [[], {"action": "wait"}])
def test_actions_must_be_a_non_empty_list(actions):
    with pytest.raises(RejectError) as error:
        parse_document(gui(actions=actions), None)
    assert error.value.reason is RejectReason.BAD_GUI_ACTION


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({}, RejectReason.BAD_SCHEMA),
        ({"actions": [{"action": "wait"}], "targets": [{"point": [1, 1], "label": "x"}]}, RejectReason.BAD_SCHEMA),
        ({"targets": []}, RejectReason.BAD_SCHEMA),
        ({"targets": [{"point": [1, 1], "label": "x"}, {"bbox_2d": [0, 0, 2, 2], "label": "y"}]},
         RejectReason.BAD_SCHEMA),
        ({"targets": [{"point": [1, 1], "bbox_2d": [0, 0, 2, 2], "label": "x"}]}, RejectReason.BAD_SCHEMA),
        ({"targets": [{"point": [1], "label": "x"}]}, RejectReason.BAD_SCHEMA),
        ({"targets": [{"bbox_2d": [5, 5, 1, 9], "label": "x"}]}, RejectReason.BAD_SCHEMA),
        ({"targets": [{"point": [1, 1]}]}, RejectReason.BAD_SCHEMA),
        ({"targets": [{"point": [1, 1], "label": " "}]}, RejectReason.EMPTY_TEXT),
        ({"instruction": "", "actions": [{"action": "wait"}]}, RejectReason.EMPTY_TEXT),
        ({"instruction": None, "actions": [{"action": "wait"}]}, RejectReason.BAD_SCHEMA),
    ],
)
def test_bad_records_name_their_reason(fields, reason):
    with pytest.raises(RejectError) as error:
        parse_document(gui(**fields), None)
    assert error.value.reason is reason
    assert error.value.detail


@pytest.mark.parametrize(
    "fields, where",
    [
        ({"actions": [{"action": "click", "start_point": [401, 10]}]}, "action 0 (click) start_point [401, 10]"),
        ({"actions": [{"action": "wait"}, {"action": "drag", "start_point": [1, 1], "end_point": [5, -0.5]}]},
         "action 1 (drag) end_point [5, -0.5]"),
        ({"actions": [{"action": "scroll", "direction": "up", "start_point": [10, 200.5]}]},
         "action 0 (scroll) start_point [10, 200.5]"),
        ({"targets": [{"point": [1, 1], "label": "a"}, {"point": [-1, 1], "label": "b"}]}, "target 1 point [-1, 1]"),
    ],
)
def test_points_outside_the_screenshot_are_rejected(fields, where):
    answer = parse_document(gui(**fields), None).segments[2]
    with pytest.raises(RejectError) as error:
        render_gui(answer, ORIGINAL, RESIZED)
    assert error.value.reason is RejectReason.POINT_OUTSIDE_IMAGE
    assert error.value.detail == f"{where} lies outside the 400x200 (width x height) image"
