"""VLMEvalKit TSVs written by the test (base64 PNGs): rows, prompts, image references, metric inference, errors."""

import base64
import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings, read_benchmark
from checkpoints_tools.benchmark_scoring.benchmark_rows import decode_row_images


def png_base64(width: int, height: int, colour=(200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, columns: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter="\t")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


MC_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]


def mc_file(tmp_path: Path) -> Path:
    image = png_base64(64, 48)
    return write_tsv(tmp_path / "MMBench_DEV_EN.tsv", MC_COLUMNS, [
        ["1", "What colour is it?", "Look closely.", "red", "green", "", "", "A", "colour", image],
        ["2", "Which shape?\nPick one.", "", "circle", "square", "triangle", "line", "C", "shape", "1"],
    ])


def test_multiple_choice_rows_and_vlmevalkit_prompt(tmp_path):
    benchmark = read_benchmark(mc_file(tmp_path))
    assert benchmark.metric == "multiple_choice"
    first, second = benchmark.rows
    assert first.prompt == (
        "Hint: Look closely.\nQuestion: What colour is it?\nOptions:\nA. red\nB. green\n"
        "Please select the correct answer from the options above. \n"
    )
    assert first.options == {"A": "red", "B": "green"} and first.answers == ("A",) and first.category == "colour"
    assert second.prompt.startswith("Question: Which shape?\nPick one.\nOptions:\nA. circle\n")
    assert second.options == {"A": "circle", "B": "square", "C": "triangle", "D": "line"}
    # Row 2's image is the index of row 1, as MMBench writes a repeated picture.
    assert second.images == first.images
    [image] = decode_row_images(benchmark.path, second)
    assert image.size == (64, 48) and image.getpixel((0, 0)) == (200, 30, 30)


def test_limit_takes_the_first_rows(tmp_path):
    assert [row.index for row in read_benchmark(mc_file(tmp_path), limit=1).rows] == ["1"]


def test_open_vqa_answers_lists_and_inferred_metrics(tmp_path):
    image = png_base64(32, 32)
    rows = [["7", image, "What year?", "['1995', 'nineteen ninety-five']"], ["8", image, "Total?", "42"]]
    columns = ["index", "image", "question", "answer"]
    docvqa = read_benchmark(write_tsv(tmp_path / "DocVQA_VAL.tsv", columns, rows))
    assert docvqa.metric == "anls"
    assert docvqa.rows[0].answers == ("1995", "nineteen ninety-five") and docvqa.rows[1].answers == ("42",)
    assert docvqa.rows[0].prompt == "What year?\nAnswer the question using a single word or phrase."
    assert docvqa.rows[0].category == ""
    assert read_benchmark(write_tsv(tmp_path / "ChartQA_TEST.tsv", columns, rows)).metric == "relaxed_accuracy"
    plain = read_benchmark(write_tsv(tmp_path / "mine.tsv", columns, rows), prompts=PromptSettings(vqa_suffix=""))
    assert plain.metric == "exact_match" and plain.rows[1].prompt == "Total?"
    assert read_benchmark(tmp_path / "mine.tsv", "relaxed_accuracy").metric == "relaxed_accuracy"


def test_several_images_and_image_paths(tmp_path):
    Image.new("RGB", (20, 10), (0, 0, 255)).save(tmp_path / "blue.png")
    listed = str([png_base64(16, 16), png_base64(8, 24)])
    path = write_tsv(tmp_path / "multi.tsv", ["index", "image", "image_path", "question", "answer"], [
        ["1", listed, "", "q", "a"], ["2", "", "blue.png", "q", "a"],
    ])
    benchmark = read_benchmark(path)
    assert [image.size for image in decode_row_images(path, benchmark.rows[0])] == [(16, 16), (8, 24)]
    assert [image.size for image in decode_row_images(path, benchmark.rows[1])] == [(20, 10)]


@pytest.mark.parametrize(("columns", "row", "message"), [
    (["index", "image", "question"], ["1", "x" * 100, "q"], r"no column 'answer'"),
    (["index", "question", "answer"], ["1", "q", "a"], r"no column 'image'"),
    (MC_COLUMNS, ["5", "q", "", "red", "", "", "", "A", "c", "x" * 100], r"row 5: has 1 option\(s\) \['A'\]"),
    (MC_COLUMNS, ["5", "q", "", "red", "blue", "", "", "C", "c", "x" * 100], r"row 5: answer 'C' is not one of"),
    (MC_COLUMNS, ["5", "q", "", "red", "blue", "", "", "", "c", "x" * 100], r"row 5: has an empty answer"),
    (MC_COLUMNS, ["5", "", "", "red", "blue", "", "", "A", "c", "x" * 100], r"row 5: has an empty question"),
    (MC_COLUMNS, ["5", "q", "", "red", "blue", "", "", "A", "c", "9"], r"row 5: image '9' is neither base64 nor"),
    (MC_COLUMNS, ["5", "q", "", "red", "blue", "", "", "A", "c", ""], r"row 5: has no image"),
])
def test_malformed_files_name_the_file_and_row(tmp_path, columns, row, message):
    path = write_tsv(tmp_path / "bad.tsv", columns, [row])
    with pytest.raises(ValueError, match=message) as error:
        read_benchmark(path)
    assert str(path) in str(error.value)


def test_options_needed_for_multiple_choice(tmp_path):
    path = write_tsv(tmp_path / "open.tsv", ["index", "image", "question", "answer"], [["1", "x" * 100, "q", "A"]])
    with pytest.raises(ValueError, match="no option columns"):
        read_benchmark(path, "multiple_choice")
    with pytest.raises(ValueError, match="'grounding' does not apply to a .tsv file"):
        read_benchmark(path, "grounding")
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        read_benchmark(path, "bleu")


def test_images_that_do_not_decode_name_the_file_and_row(tmp_path):
    not_base64 = "!" * 100
    not_an_image = base64.b64encode(b"this is not a picture at all" * 4).decode()
    path = write_tsv(tmp_path / "images.tsv", ["index", "image", "question", "answer"], [
        ["11", not_base64, "q", "a"], ["12", not_an_image, "q", "a"],
    ])
    first, second = read_benchmark(path).rows
    with pytest.raises(ValueError, match=r"images.tsv: row 11: image is not valid base64"):
        decode_row_images(path, first)
    with pytest.raises(ValueError, match=r"images.tsv: row 12: image does not decode"):
        decode_row_images(path, second)
