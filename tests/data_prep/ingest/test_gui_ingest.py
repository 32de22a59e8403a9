"""ingest of gui records: good ones become samples with answers in resized pixels, bad ones are counted rejects."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image, ImageDraw

from data_prep.sample_shards.reader import iter_dataset
from tests.data_prep.ingest.test_ingest import add_member, run_ingest, smooth_picture

# screen.png is 200x100 (width x height); ingest resizes it to 196x112: x scales by 0.98, y by 1.12.
CLICK = {"action": "click", "start_point": [100, 50]}
LINES = {
    1: ({"actions": [CLICK, {"action": "input", "text": "dark"}]},
        '[{"action": "click", "start_point": [98, 56]}, {"action": "input", "text": "dark"}]'),
    2: ({"targets": [{"point": [50, 25], "label": "Dark mode"}]}, '[{"point_2d": [49, 28], "label": "Dark mode"}]'),
    3: ({"targets": [{"bbox_2d": [10, 10, 60, 40], "label": "Dark mode"}]},
        '[{"bbox_2d": [9, 11, 59, 45], "label": "Dark mode"}]'),
    4: ({"actions": [CLICK, {"action": "tap", "start_point": [1, 1]}]}, "bad_gui_action"),
    5: ({"actions": [{"action": "drag", "start_point": [1, 1]}]}, "bad_gui_action"),
    6: ({"actions": [{"action": "open", "app": "Settings", "start_point": [1, 1]}]}, "bad_gui_action"),
    7: ({"actions": [{"action": "longpress", "start_point": [1, "2"]}]}, "bad_gui_action"),
    8: ({"actions": [{"action": "scroll", "direction": "forward"}]}, "bad_gui_action"),
    9: ({"actions": [{"action": "input", "text": ""}]}, "bad_gui_action"),
    10: ({"actions": [{"action": "press", "keys": []}]}, "bad_gui_action"),
    11: ({"actions": [{"action": "click", "start_point": [201, 50]}]}, "point_outside_image"),
    12: ({"targets": [{"point": [50, 101], "label": "below"}]}, "point_outside_image"),
    13: ({"targets": [{"bbox_2d": [150, 10, 210, 40], "label": "wide"}]}, "box_outside_image"),
    14: ({"actions": [CLICK], "targets": [{"point": [1, 1], "label": "x"}]}, "bad_schema"),
    15: ({"actions": [{"action": "scroll", "direction": "down", "start_point": [100, 50], "scroll_distance": 25},
                     {"action": "finished", "status": "success"}]},
         '[{"action": "scroll", "start_point": [98, 56], "direction": "down", "scroll_distance": 28}, '
         '{"action": "finished", "status": "success"}]'),
}
GOOD = {number: answer for number, (_, answer) in LINES.items() if answer.startswith("[")}


def test_good_gui_records_are_kept_and_every_bad_one_is_counted(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    smooth_picture(0).resize((200, 100)).save(raw / "screen.png")
    (raw / "gui.jsonl").write_text("".join(
        json.dumps({"kind": "gui", "image": "screen.png", "instruction": f"Step {number}.", **fields}) + "\n"
        for number, (fields, _) in LINES.items()
    ))
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw, "--out", out, "--workers", 1)

    samples = [record for _, record in iter_dataset(str(out))]
    assert {record.meta.source["line"]: record.meta.segments[-1] for record in samples} == {
        number: {"text": answer, "loss": True} for number, answer in GOOD.items()
    }
    assert all(record.meta.segments[:2] == [{"image": 0}, {"text": f"Step {record.meta.source['line']}.\n",
                                                             "loss": False}] for record in samples)
    assert all((entry.width, entry.height) == (196, 112) for record in samples for entry in record.meta.images)
    logged = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    expected = {number: reason for number, (_, reason) in LINES.items() if number not in GOOD}
    assert {entry["line"]: entry["reason"] for entry in logged} == expected
    assert manifest.rejects == {"bad_gui_action": 7, "point_outside_image": 2, "box_outside_image": 1, "bad_schema": 1}
    assert manifest.kinds == {"gui": len(GOOD)} and manifest.num_rejected == len(expected)


def test_a_gui_record_in_a_webdataset_tar_takes_its_only_image(tmp_path):
    buffer = io.BytesIO()
    smooth_picture(1).resize((200, 100)).save(buffer, format="PNG")
    record = {"kind": "gui", "instruction": "Open it.", "actions": [CLICK]}
    with tarfile.open(tmp_path / "gui.tar", "w") as tar:
        add_member(tar, "s/0001.json", json.dumps(record).encode())
        add_member(tar, "s/0001.png", buffer.getvalue())
    run_ingest("--input", tmp_path / "gui.tar", "--out", tmp_path / "out", "--workers", 1)
    [(_, record)] = list(iter_dataset(str(tmp_path / "out")))
    assert record.meta.segments[-1]["text"] == '[{"action": "click", "start_point": [98, 56]}]'


def test_written_points_land_on_the_elements_of_the_resized_screenshot(tmp_path):
    # Small elements near the edges of an odd-sized screenshot: a point off by a resized pixel misses them.
    elements = {"red": ((220, 30, 30), [500, 320, 514, 330]), "blue": ((30, 30, 220), [2, 3, 12, 11])}
    screen = Image.new("RGB", (517, 333), (255, 255, 255))
    for color, box in elements.values():
        ImageDraw.Draw(screen).rectangle(box, fill=color)
    screen.save(tmp_path / "screen.png")
    centers = {name: [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2] for name, (_, box) in elements.items()}
    record = {"kind": "gui", "image": "screen.png", "instruction": "Drag blue onto red.",
              "actions": [{"action": "drag", "start_point": centers["blue"], "end_point": centers["red"]}]}
    (tmp_path / "gui.jsonl").write_text(json.dumps(record) + "\n")
    run_ingest("--input", tmp_path / "gui.jsonl", "--out", tmp_path / "out", "--workers", 1)
    [(_, sample)] = list(iter_dataset(str(tmp_path / "out")))
    pixels = np.asarray(Image.open(io.BytesIO(sample.images[0]))).astype(int)
    assert pixels.shape[:2] != (333, 517)
    [drag] = json.loads(sample.meta.segments[-1]["text"])
    for point, name in ((drag["start_point"], "blue"), (drag["end_point"], "red")):
        x, y = point
        assert np.abs(pixels[y, x] - elements[name][0]).max() < 40, (name, point)
