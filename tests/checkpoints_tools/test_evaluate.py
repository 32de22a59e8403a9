"""``evaluate`` end to end on the tiny export: every benchmark format, the JSON results, the table, the errors."""

import base64
import io
import json

import pytest

from checkpoints_tools import evaluate as evaluate_command
from checkpoints_tools.batched_generation import Generated
from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings
from checkpoints_tools.benchmark_scoring.cider import cider_d
from checkpoints_tools.benchmark_scoring.grounding_answers import parse_boxes, resized_size, to_original
from checkpoints_tools.benchmark_scoring.metrics import anls, box_iou
from checkpoints_tools.benchmark_scoring.option_extraction import extract_option
from checkpoints_tools.evaluate import evaluate_folder
from checkpoints_tools.hf_inputs import draw_image
from checkpoints_tools.to_hf import export
from tests.checkpoints_tools.benchmark_scoring.test_jsonl_benchmarks import write_jsonl
from tests.checkpoints_tools.benchmark_scoring.test_tsv_benchmarks import MC_COLUMNS, write_tsv
from tests.checkpoints_tools.conftest import IMAGE_SETTINGS


def drawn_base64(width: int, height: int, seed: int) -> str:
    buffer = io.BytesIO()
    draw_image(width, height, seed).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    directory = tmp_path_factory.mktemp("exported") / "hf"
    export(world.megatron_roots[(1, 1)], directory, progress=False)
    return directory


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    mc = write_tsv(root / "MMBench_DEV_EN.tsv", MC_COLUMNS, [
        ["1", "What colour is the top left?", "", "red", "blue", "green", "", "A", "colour", drawn_base64(120, 90, 1)],
        ["2", "Which shape is largest?", "Shapes.", "circle", "square", "", "", "B", "shape", drawn_base64(64, 96, 2)],
        ["3", "Is there a square?", "", "yes", "no", "", "", "A", "shape", "2"],
    ])
    docvqa = write_tsv(root / "DocVQA_VAL.tsv", ["index", "image", "question", "answer"], [
        ["10", drawn_base64(100, 140, 3), "What is the title?", "['Report', 'the report']"],
        ["11", drawn_base64(140, 100, 4), "What is the total?", "85"],
    ])
    draw_image(300, 200, 5).save(root / "screen.png")
    grounding = write_jsonl(root / "grounding.jsonl", [
        {"image": "screen.png", "query": "the red circle", "boxes": [[10, 20, 110, 120]], "category": "shapes"},
        {"image": drawn_base64(90, 60, 6), "query": "the blue square", "boxes": [[0, 0, 45, 30], [45, 30, 90, 60]]},
    ])
    captions = write_jsonl(root / "captions.jsonl", [
        {"image": drawn_base64(80, 80, 7), "captions": ["a red circle and a blue square", "shapes on a tint"]},
        {"image": drawn_base64(50, 70, 8), "captions": ["coloured shapes"]},
    ])
    return [mc, docvqa, grounding, captions]


def test_evaluate_folder_scores_every_format_from_its_predictions(exported, files):
    results = evaluate_folder(exported, files, batch_size=2, workers=2, max_new_tokens=3, device="cpu", progress=False)
    assert results["model"] == str(exported) and results["engine"] == "transformers" and results["device"] == "cpu"
    mc, docvqa, grounding, captions = results["files"]
    assert [result["metric"] for result in results["files"]] == ["multiple_choice", "anls", "grounding", "cider"]
    assert [result["rows"] for result in results["files"]] == [3, 2, 2, 2]
    for result, path in zip(results["files"], files):
        assert result["path"] == str(path) and len(result["predictions"]) == result["rows"]
        assert all(isinstance(row["prediction"], str) for row in result["predictions"])
        scores = [row["score"] for row in result["predictions"]]
        assert result["score"] == pytest.approx(sum(scores) / len(scores))
    assert [row["index"] for row in mc["predictions"]] == ["1", "2", "3"]
    assert mc["categories"] == {
        "colour": {"rows": 1, "score": mc["predictions"][0]["score"]},
        "shape": {"rows": 2, "score": (mc["predictions"][1]["score"] + mc["predictions"][2]["score"]) / 2},
    }
    assert docvqa["categories"] == {}
    # Each score recomputed from its prediction by the metric.
    for row, options in zip(mc["predictions"], [{"A": "red", "B": "blue", "C": "green"}, {"A": "circle", "B": "square"}] * 2):
        assert row["extracted"] == extract_option(row["prediction"].strip(), options)
        assert row["score"] == float(row["extracted"] == row["answers"][0])
    assert docvqa["predictions"][0]["score"] == anls(docvqa["predictions"][0]["prediction"].strip(), ["Report", "the report"])
    for row, size in zip(grounding["predictions"], [(300, 200), (90, 60)]):
        boxes = parse_boxes(row["prediction"])
        iou = max(box_iou(to_original(boxes[0], size, resized_size(*size, IMAGE_SETTINGS)), box) for box in row["boxes"]) if boxes else 0.0
        assert row["iou"] == pytest.approx(iou) and row["score"] == float(iou >= 0.5)
    assert "mean_iou" in grounding
    expected = cider_d([row["prediction"].strip() for row in captions["predictions"]], [row["answers"] for row in captions["predictions"]])
    assert [row["score"] for row in captions["predictions"]] == pytest.approx(expected)


class CannedGenerator:
    """Answers each prompt with the canned text of the first key it contains: scores are then known exactly."""

    image_settings = IMAGE_SETTINGS

    def __init__(self, answers: dict[str, str]):
        self.answers, self.batches, self.chats = answers, [], []

    def generate(self, images, prompts, *, max_new_tokens, chat):
        self.batches.append([len(row) for row in images])
        self.chats.append(chat)
        return [Generated(next(text for key, text in self.answers.items() if key in prompt), ()) for prompt in prompts]


def test_known_answers_give_known_scores(files, monkeypatch):
    mc, docvqa, grounding, _ = files
    canned = CannedGenerator({
        "What colour": "<think>B? No.</think>Answer: A",
        "Which shape": "It is a circle.",
        "Is there a square": "A or B",
        "title": "Reprt",
        "total": "58",
        # The 300x200 screenshot is resized to 252x168 (IMAGE_SETTINGS): this box maps back to (10, 20, 110, 120).
        "the red circle": '[{"bbox_2d": [8.4, 16.8, 92.4, 100.8], "label": "circle"}]',
        "the blue square": "nowhere",
    })
    monkeypatch.setattr(evaluate_command, "_make_generator", lambda *args: canned)
    results = evaluate_folder("unused", [mc, docvqa, grounding], batch_size=2, workers=1, progress=False)
    mc_result, docvqa_result, grounding_result = results["files"]
    assert [row["extracted"] for row in mc_result["predictions"]] == ["A", "A", None]
    assert mc_result["predictions"][0]["prediction"] == "<think>B? No.</think>Answer: A"
    assert mc_result["score"] == pytest.approx(1 / 3)
    assert mc_result["categories"] == {"colour": {"rows": 1, "score": 1.0}, "shape": {"rows": 2, "score": 0.0}}
    # "Reprt" is one deletion from "Report" (6 characters); "58" is 2 substitutions of 2 from "85".
    assert [row["score"] for row in docvqa_result["predictions"]] == pytest.approx([1 - 1 / 6, 0.0])
    assert [row["score"] for row in grounding_result["predictions"]] == [1.0, 0.0]
    assert grounding_result["predictions"][0]["box"] == pytest.approx([10, 20, 110, 120])
    assert grounding_result["mean_iou"] == pytest.approx(0.5)
    # 3, 2 and 2 rows in batches of 2; each row has one picture (the third MC row reuses row 2's).
    assert canned.batches == [[1, 1], [1], [1, 1], [1, 1]]
    assert canned.chats == [True] * 4


def test_base_models_are_asked_without_the_chat_template(files, monkeypatch):
    *_, captions = files
    canned = CannedGenerator({"": "a caption"})
    monkeypatch.setattr(evaluate_command, "_make_generator", lambda *args: canned)
    results = evaluate_folder("unused", [captions], workers=1, progress=False,
                              prompts=PromptSettings(caption_prompt="", chat=False))
    assert canned.chats == [False] and {row["prediction"] for row in results["files"][0]["predictions"]} == {"a caption"}
    with pytest.raises(ValueError, match="only makes sense without the chat template"):
        PromptSettings(caption_prompt=" ")


def test_command_prints_a_table_and_writes_json(exported, files, tmp_path, capsys):
    out = tmp_path / "results" / "scores.json"
    argv = ["--hf", str(exported), *map(str, files[:2]), "--limit", "2", "--batch-size", "2", "--max-new-tokens", "2",
            "--device", "cpu", "--out", str(out)]
    assert evaluate_command.main(argv) == 0
    printed = capsys.readouterr().out
    assert "MMBench_DEV_EN.tsv  multiple_choice" in printed and "DocVQA_VAL.tsv" in printed
    assert "colour" in printed and "shape" in printed and f"results written to {out}" in printed
    results = json.loads(out.read_text())
    assert [(result["metric"], result["rows"]) for result in results["files"]] == [("multiple_choice", 2), ("anls", 2)]


def test_command_exports_a_checkpoint_first(world, files, capsys):
    argv = ["--ckpt", str(world.megatron_roots[(1, 1)]), str(files[0]), "--limit", "1", "--max-new-tokens", "1",
            "--metric", "multiple_choice"]
    assert evaluate_command.main(argv) == 0
    printed = capsys.readouterr().out
    assert "exported iteration" in printed and "MMBench_DEV_EN.tsv" in printed


def test_command_user_errors(exported, files, tmp_path, capsys):
    bad = write_tsv(tmp_path / "bad.tsv", MC_COLUMNS, [["4", "q", "", "red", "", "", "", "A", "c", "x" * 100]])
    assert evaluate_command.main(["--hf", str(exported), str(bad)]) == 2
    assert f"{bad}: row 4: has 1 option(s)" in capsys.readouterr().err
    undecodable = write_tsv(tmp_path / "undecodable.tsv", ["index", "image", "question", "answer"], [["9", "!" * 100, "q", "a"]])
    assert evaluate_command.main(["--hf", str(exported), str(undecodable), "--device", "cpu"]) == 2
    assert f"{undecodable}: row 9: image is not valid base64" in capsys.readouterr().err
    assert evaluate_command.main(["--hf", str(exported), *map(str, files), "--metric", "anls", "--metric", "cider"]) == 2
    assert "2 --metric for 4 files" in capsys.readouterr().err
    assert evaluate_command.main(["--hf", str(exported), str(files[0]), "--iteration", "3"]) == 2
    assert "--iteration picks an iteration of --ckpt" in capsys.readouterr().err
    assert evaluate_command.main(["--hf", str(tmp_path), str(files[0])]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_chance_answers_each_row_with_the_next_rows_reference(files):
    mc, docvqa, grounding, captions = files
    results = evaluate_command.chance_levels([mc, docvqa, grounding, captions])
    mc_result, docvqa_result, grounding_result, caption_result = results["files"]
    # MC answers A, B, A -> answered B, A, A: only the last row is right by chance.
    assert [row["prediction"] for row in mc_result["predictions"]] == ["B", "A", "A"]
    assert mc_result["score"] == pytest.approx(1 / 3)
    assert [row["prediction"] for row in docvqa_result["predictions"]] == ["85", "Report"]
    assert [row["prediction"] for row in caption_result["predictions"]] == ["coloured shapes", "a red circle and a blue square"]
    # The 90x60 picture's first box covers its top left quarter: placed on the 300x200 screen, the top left quarter.
    first, second = grounding_result["predictions"]
    assert first["box"] == pytest.approx([0, 0, 150, 100], abs=2)
    assert second["box"] == pytest.approx([3, 6, 33, 36], abs=1)
    assert grounding_result["score"] == pytest.approx(0.0) and grounding_result["mean_iou"] > 0


def test_chance_from_the_command_line_needs_no_model(files, capsys):
    assert evaluate_command.main(["--chance", str(files[0])]) == 0
    assert "MMBench_DEV_EN.tsv  multiple_choice" in capsys.readouterr().out
