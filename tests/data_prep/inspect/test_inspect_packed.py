"""inspect: dataset statistics and a packed sample shown as text, images, positions, loss and boxes."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.inspect.inspect_packed import describe_sample
from megatron_vl.data.packed_format import PackedDataset
from megatron_vl.tokenizer import load_tokenizer
from tests.data_prep.sample_corpus import build_packed_dataset, make_video_samples
from tests.object_storage_servers import HttpServer


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return build_packed_dataset(tmp_path_factory.mktemp("inspect"))


@pytest.fixture(scope="module")
def video_packed(tmp_path_factory):
    samples = make_video_samples(np.random.default_rng(1), 6)
    return build_packed_dataset(tmp_path_factory.mktemp("inspect-videos"), samples)


def grounding_sample(packed_dir):
    dataset = PackedDataset(packed_dir)
    return next(i for i in range(len(dataset)) if any(d.kind == "grounding" for d in dataset[i].documents))


def test_statistics(packed, capsys):
    assert main(["inspect", str(packed[1])]) == 0
    out = capsys.readouterr().out
    for expected in ("grounding", "interleaved", "padding", "document length histogram", "dropped "
                     "(image_longer_than_seq_len): 1", "split into parts"):
        assert expected in out


def test_sample_shows_text_images_positions_loss_and_boxes(packed, capsys):
    tokenizer_path, directory = packed
    number = grounding_sample(directory)
    assert main(["inspect", str(directory), "--sample", str(number), "--tokenizer", tokenizer_path,
                 "--tokens", "0:12"]) == 0
    out = capsys.readouterr().out
    assert f"sample {number}: 256 tokens" in out
    assert "kind grounding" in out and "(file raw/grounding.jsonl, line" in out
    assert "loss  <think>[{\"bbox_2d\": [10, 20, 40, 50], \"label\": \"cat\"}]<|endoftext|>" in out
    assert "box [10, 20, 40, 50] 'cat' on image" in out and ": inside" in out
    assert "<image 0:" in out and "grid 1x" in out
    table = out[out.index("  index      id"):].splitlines()
    assert len(table) == 13 and table[1].split()[0] == "0"


def test_prompt_runs_are_context_and_answer_runs_are_loss(packed):
    tokenizer_path, directory = packed
    tokenizer = load_tokenizer(tokenizer_path)
    sample = PackedDataset(directory)[grounding_sample(directory)]
    text = describe_sample(sample, tokenizer, patch=14, temporal_patch_size=2, title="s")
    lines = [line for line in text.splitlines() if "<think>[" in line]
    assert lines and all("  loss  " in line for line in lines)
    assert all("  ctx   <image" in line for line in text.splitlines() if "<image" in line)


def test_draw_marks_the_boxes(packed, tmp_path):
    tokenizer_path, directory = packed
    number = grounding_sample(directory)
    assert main(["inspect", str(directory), "--sample", str(number), "--tokenizer", tokenizer_path,
                 "--draw", str(tmp_path)]) == 0
    sample = PackedDataset(directory)[number]
    drawn = [np.asarray(Image.open(tmp_path / f"sample{number}-image{k}.png")) for k in range(len(sample.images))]
    # The test corpus's box is [10, 20, 40, 50]: its left edge is red on some image.
    assert any((pixels[25:45, 10] == (255, 0, 0)).all() for pixels in drawn)


def test_wrong_tokenizer_is_refused(packed, tmp_path, capsys):
    content = json.loads(open(packed[0]).read())
    content["model"]["dropout"] = 0.5
    other = tmp_path / "tokenizer.json"
    other.write_text(json.dumps(content))
    assert main(["inspect", str(packed[1]), "--sample", "0", "--tokenizer", str(other)]) == 2
    assert "is not the one" in capsys.readouterr().err


def test_a_dataset_at_a_url_is_inspected_as_the_local_folder(packed, capsys):
    tokenizer_path, directory = packed
    with HttpServer(directory.parent) as server:
        url = f"{server.url}/{directory.name}"
        for command in (["inspect", "{}"], ["inspect", "{}", "--sample", "1", "--tokenizer", str(tokenizer_path)]):
            assert main([part.format(directory) for part in command]) == 0
            local = capsys.readouterr().out
            assert main([part.format(url) for part in command]) == 0
            assert capsys.readouterr().out == local.replace(str(directory), url)


def find_video(packed_dir, frames, height, width):
    """(packed sample number, video number in it) of the first video of ``frames`` frames of ``height`` x ``width``."""
    dataset = PackedDataset(packed_dir)
    return next((i, k) for i in range(len(dataset)) for k, (video, (_, h, w)) in
                enumerate(zip(dataset[i].videos, dataset[i].video_grid_thw))
                if len(video) == frames and (h * 14, w * 14) == (height, width))


def test_statistics_count_videos(video_packed, capsys):
    assert main(["inspect", str(video_packed[1])]) == 0
    out = capsys.readouterr().out
    assert "video tok" in out and "video_caption" in out and "dropped (video_longer_than_seq_len): 1" in out
    assert "video time positions: 2 per second" in out


def test_sample_shows_videos_with_their_frames_grid_and_time(video_packed, capsys):
    tokenizer_path, directory = video_packed
    number, k = find_video(directory, 5, 56, 84)  # the corpus's 5-frame 56x84 video stored at 3 fps
    assert main(["inspect", str(directory), "--sample", str(number), "--tokenizer", tokenizer_path]) == 0
    out = capsys.readouterr().out
    assert (f"sample {number}: 256 tokens" in out and " videos, " in out)
    line = next(line for line in out.splitlines() if f"<video {k}:" in line)
    assert f"  ctx   <video {k}: 5 frames of 56x84 px at 3 fps, grid 3x4x6, 0.667 s per temporal patch, covers " \
           "1.67 s, 18 tokens, t " in line
    start = int(line.split()[0].split("-")[0]) + 1
    t = PackedDataset(directory)[number].position_ids[0]
    assert f"t {t[start]}-{t[start] + 2}" in line  # 3 temporal patches of 2/3 s at 2 positions per second: +0, +1, +2


def test_draw_shows_each_video_as_a_strip_of_frames(video_packed, tmp_path, capsys):
    tokenizer_path, directory = video_packed
    number, k = find_video(directory, 8, 28, 56)  # 8 frames of 28x56: 6 of them in the strip
    assert main(["inspect", str(directory), "--sample", str(number), "--tokenizer", tokenizer_path,
                 "--draw", str(tmp_path)]) == 0
    assert f"sample{number}-video{k}.png" in capsys.readouterr().out
    strip = Image.open(tmp_path / f"sample{number}-video{k}.png")
    assert strip.size == (6 * (56 + 4), 28 + 14)
    first = PackedDataset(directory)[number].videos[k][0]
    np.testing.assert_array_equal(np.asarray(strip)[:28, :56], np.asarray(Image.open(io.BytesIO(first)).convert("RGB")))
