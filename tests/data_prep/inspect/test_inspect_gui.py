"""inspect --sample lists the actions and points of gui documents' answers, and --draw draws them."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.inspect.gui_answers import ACTION_COLOR, TARGET_COLOR, describe
from data_prep.pack.command import PackOptions, pack
from data_prep.sample_shards.sample_meta import SampleImage, SampleMeta
from megatron_vl.data.packed_format import PackedDataset
from tests.data_prep.sample_corpus import train_tokenizer, write_sample_dataset

ACTIONS = ('[{"action": "click", "start_point": [30, 40]}, {"action": "drag", "start_point": [60, 20], '
           '"end_point": [150, 80]}, {"action": "scroll", "start_point": [100, 60], "direction": "down", '
           '"scroll_distance": 30}, {"action": "press", "keys": ["home"]}]')
TARGETS = '[{"point_2d": [50, 50], "label": "OK"}, {"point_2d": [500, 10], "label": "far"}]'
BROKEN = "not json: click the button"


def gui_sample(line: int, size: tuple[int, int], answer: str):
    height, width = size
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, format="PNG")
    image = SampleImage(height=height, width=width, orig_height=height, orig_width=width,
                        sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
    segments = [{"image": 0}, {"text": "Turn on dark mode.\n", "loss": False}, {"text": answer, "loss": True}]
    return SampleMeta(kind="gui", source={"file": "raw/gui.jsonl", "line": line}, images=[image],
                      segments=segments), [buffer.getvalue()]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect_gui")
    tokenizer = train_tokenizer(root / "tokenizer")
    samples = [gui_sample(1, (112, 196), ACTIONS), gui_sample(2, (112, 112), TARGETS), gui_sample(3, (56, 56), BROKEN)]
    inputs = [str(write_sample_dataset(root / "input", samples))]
    pack(PackOptions(inputs=inputs, tokenizer=tokenizer, out=str(root / "packed"), seq_len=2048, workers=1),
         progress=False)
    assert len(PackedDataset(root / "packed")) == 1
    return tokenizer, root / "packed"


def test_describe_names_each_action_and_its_arguments():
    assert describe({"action": "input", "start_point": [1, 2], "text": "hi"}) == "input (1, 2) 'hi'"
    assert describe({"action": "press", "keys": ["ctrl", "c"]}) == "press ctrl+c"
    assert describe({"action": "open", "app": "Settings"}) == "open 'Settings'"
    assert describe({"action": "finished", "status": "success"}) == "finished 'success'"
    assert describe({"point_2d": [3, 4], "label": "OK"}) == "point (3, 4) 'OK'"


def test_sample_lists_gui_actions_and_points_on_their_images(packed, capsys):
    tokenizer, directory = packed
    assert main(["inspect", str(directory), "--sample", "0", "--tokenizer", tokenizer]) == 0
    out = capsys.readouterr().out
    action_image = " (196x112): inside"
    for line in ("click (30, 40)", "drag (60, 20) -> (150, 80)", "scroll down (100, 60) by 30 px"):
        assert any(text.startswith(f"  gui {line} on image ") and text.endswith(action_image)
                   for text in out.splitlines()), line
    assert "  gui press home\n" in out
    assert any(text.startswith("  gui point (50, 50) 'OK' on image ") and text.endswith(" (112x112): inside")
               for text in out.splitlines())
    assert any(text.startswith("  gui point (500, 10) 'far' on image ") and text.endswith(": OUTSIDE the image")
               for text in out.splitlines())
    assert f"  gui answer (not JSON, shown as text): '{BROKEN}<|endoftext|>'" in out


def test_draw_marks_points_drags_and_scrolls(packed, tmp_path):
    tokenizer, directory = packed
    assert main(["inspect", str(directory), "--sample", "0", "--tokenizer", tokenizer, "--draw", str(tmp_path)]) == 0
    drawn = [np.asarray(Image.open(tmp_path / f"sample0-image{k}.png")) for k in range(3)]
    [actions] = [pixels for pixels in drawn if pixels.shape == (112, 196, 3)]
    [targets] = [pixels for pixels in drawn if pixels.shape == (112, 112, 3)]
    [broken] = [pixels for pixels in drawn if pixels.shape == (56, 56, 3)]
    # The click's crosshair (center and arm ends), the drag's shaft midway, the scroll's arrow below its start.
    for x, y in ((30, 40), (24, 40), (36, 40), (30, 34), (30, 46), (105, 50), (100, 75)):
        assert tuple(actions[y, x]) == ACTION_COLOR, (x, y)
    assert tuple(targets[50, 50]) == TARGET_COLOR and tuple(targets[50, 44]) == TARGET_COLOR
    # press has no point: it is written (antialiased) in the top-left corner; an unparsed answer draws nothing.
    assert np.abs(actions[2:14, 2:40].astype(int) - ACTION_COLOR).max(axis=-1).min() < 40
    assert (broken == 128).all()
