"""demo-corpus GUI records: the raw gui format, every action of the unified action space, and targets and
action points that land on the drawn widget they name."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from data_prep.demo import command as demo_corpus
from data_prep.demo.screens import FILL, KNOB, OUTLINE
from tests.data_prep.cli import run_subcommand

ACTION_ARGUMENTS = {
    "click": {"start_point"}, "longpress": {"start_point"}, "hover": {"start_point"},
    "drag": {"start_point", "end_point"}, "scroll": {"direction", "start_point"}, "input": {"text"},
    "press": {"keys"}, "open": {"app"}, "appswitch": set(), "select": {"start_point", "text"}, "wait": set(),
    "finished": {"status"},
}
NAMED = re.compile(r"the (.+) (button|field|checkbox|menu|list|slider)\b")


@pytest.fixture(scope="module")
def many_screens(tmp_path_factory):
    """Enough GUI records to hold every action."""
    out = tmp_path_factory.mktemp("many_screens")
    run_subcommand(demo_corpus, "--out", out, "--samples-per-kind", 150, "--seed", 5, "--kinds", "gui")
    return out


def records(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "gui.jsonl").read_text().splitlines()]


def pixels_of(directory, record) -> np.ndarray:
    image = Image.open(directory / record["image"])
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def same(pixel, color) -> bool:
    return tuple(pixel) == color


def assert_outlined(pixels: np.ndarray, box: list[int], kind: str) -> None:
    """The box's four edges are the widget kind's outline colour, and nothing else is."""
    x1, y1, x2, y2 = box
    color = np.array(OUTLINE[kind])
    for edge in (pixels[y1, x1:x2], pixels[y2 - 1, x1:x2], pixels[y1:y2, x1], pixels[y1:y2, x2 - 1]):
        assert (edge == color).all(), (box, kind)
    for outside in (pixels[y1, x1 - 1], pixels[y1 - 1, x1], pixels[y2, x2 - 1], pixels[y2 - 1, x2]):
        assert not same(outside, OUTLINE[kind]), (box, kind)


def assert_inside(pixels: np.ndarray, point: list[int], kind: str) -> None:
    """Walking from the point in each of the four directions, the first outline met is the widget kind's."""
    x, y = point
    outlines = {color: name for name, color in OUTLINE.items()}
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        step = 0
        while True:
            step += 1
            column, row = x + dx * step, y + dy * step
            assert 0 <= column < pixels.shape[1] and 0 <= row < pixels.shape[0], (point, kind)
            met = outlines.get(tuple(pixels[row, column]))
            if met is not None:
                assert met == kind, (point, kind, met)
                break


def test_records_follow_the_raw_gui_format(demo_media):
    documents = records(demo_media)
    assert len(documents) == 12
    for record in documents:
        assert record["kind"] == "gui" and record["instruction"].strip() and (demo_media / record["image"]).is_file()
        assert set(record) in ({"kind", "image", "instruction", "targets"}, {"kind", "image", "instruction", "actions"})
        for target in record.get("targets", []):
            assert set(target) in ({"bbox_2d", "label"}, {"point", "label"})
        for action in record.get("actions", []):
            assert set(action) - {"action"} == ACTION_ARGUMENTS[action["action"]], action


def test_every_action_is_drawn_with_well_typed_arguments(many_screens):
    used = set()
    for record in records(many_screens):
        for action in record.get("actions", []):
            used.add(action["action"])
            for field in ("start_point", "end_point"):
                if field in action:
                    assert len(action[field]) == 2 and all(isinstance(c, int) for c in action[field])
            if "direction" in action:
                assert action["direction"] in ("up", "down", "left", "right")
            if "keys" in action:
                assert action["keys"] and all(isinstance(key, str) and key for key in action["keys"])
            for field in ("text", "app", "status"):
                if field in action:
                    assert isinstance(action[field], str) and action[field]
    assert used == set(ACTION_ARGUMENTS)


def test_targets_land_on_the_widget_they_name(many_screens):
    checked = 0
    for record in records(many_screens):
        pixels = pixels_of(many_screens, record)
        for target in record.get("targets", []):
            kind = target["label"].rsplit(" ", 1)[1]
            if "bbox_2d" in target:
                assert_outlined(pixels, target["bbox_2d"], kind)
            else:
                assert_inside(pixels, target["point"], kind)
            checked += 1
    assert checked >= 40


def test_action_points_land_on_the_widget_the_instruction_names(many_screens):
    checked = 0
    for record in records(many_screens):
        pixels = pixels_of(many_screens, record)
        for action in record.get("actions", []):
            if action["action"] == "drag":
                assert same(pixels[action["start_point"][1], action["start_point"][0]], KNOB)
                assert same(pixels[action["end_point"][1], action["end_point"][0]], FILL["slider"])
                assert NAMED.search(record["instruction"]).group(2) == "slider"
                checked += 1
            elif "start_point" in action:
                assert_inside(pixels, action["start_point"], NAMED.search(record["instruction"]).group(2))
                checked += 1
    assert checked >= 40
