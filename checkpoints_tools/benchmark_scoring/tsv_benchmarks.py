"""VLMEvalKit's benchmark TSVs: multiple choice (MMBench, MMMU, ...) and open VQA (DocVQA, ChartQA, ...).

Columns: ``index``, ``image`` (base64; or a list of them written as a Python list; or, as MMBench does for a
repeated picture, the ``index`` of the row holding it), ``question``, ``answer``, optional ``hint`` and
``category``, and for multiple choice one column per option letter (``A``, ``B``, ... ; an empty cell is no option).
A VQA answer written as a Python list (``['12', 'twelve']``) is a list of acceptable answers. An ``image_path``
column (files relative to the TSV) may stand in for ``image``.

The multiple-choice prompt is VLMEvalKit's: ``Hint: ...`` (when there is a hint), ``Question: ...``, ``Options:``
with one ``A. text`` line per option, then ``Please select the correct answer from the options above.``
"""

from __future__ import annotations

import ast
import csv
import string
from pathlib import Path

from checkpoints_tools.benchmark_scoring.benchmark_rows import MULTIPLE_CHOICE, BenchmarkRow, row_error

# A reference to another row's image is its index; real base64 images are far longer.
_IMAGE_REFERENCE_MAX_LENGTH = 64
_FIELD_SIZE_LIMIT = 2**31 - 1


def option_columns(columns: list[str]) -> list[str]:
    """The option-letter columns of a header, in letter order."""
    return [letter for letter in string.ascii_uppercase if letter in columns]


def multiple_choice_prompt(question: str, options: dict[str, str], hint: str = "") -> str:
    prompt = f"Hint: {hint}\n" if hint else ""
    prompt += f"Question: {question}\n"
    prompt += "Options:\n" + "".join(f"{letter}. {text}\n" for letter, text in options.items())
    return prompt + "Please select the correct answer from the options above. \n"


def _python_list(text: str) -> list[str] | None:
    """``text`` as a list of strings where it is written as one (``['a', 'b']``), else None."""
    if not text.startswith("["):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return [str(item) for item in value] if isinstance(value, list) else None


def read_tsv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as file:
        return next(csv.reader(file, delimiter="\t"), [])


def read_tsv_records(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (column -> cell text) of a TSV written by pandas (quoted where needed)."""
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter="\t")
        records = list(reader)
        columns = list(reader.fieldnames or [])
    return columns, records


def _check_columns(path: Path, columns: list[str], metric: str) -> None:
    required = ["index", "question", "answer"]
    missing = [column for column in required if column not in columns]
    if "image" not in columns and "image_path" not in columns:
        missing.append("image")
    if missing:
        raise ValueError(
            f"{path} has no column {', '.join(map(repr, missing))} (it has {columns}); a benchmark TSV needs "
            "index, image (or image_path), question and answer"
        )
    if metric == MULTIPLE_CHOICE and len(option_columns(columns)) < 2:
        raise ValueError(f"{path} has no option columns A, B, ...; score it with an open VQA --metric instead")


def _row_images(path: Path, index: str, record: dict[str, str], images_by_index: dict[str, str]) -> tuple[str | Path, ...]:
    if not record.get("image"):
        if record.get("image_path"):
            files = _python_list(record["image_path"]) or [record["image_path"]]
            return tuple(path.parent / file for file in files)
        raise row_error(path, index, "has no image")
    images = _python_list(record["image"]) or [record["image"]]
    resolved = []
    for image in images:
        if len(image) <= _IMAGE_REFERENCE_MAX_LENGTH:
            if image not in images_by_index:
                raise row_error(path, index, f"image {image!r} is neither base64 nor the index of a row with an image")
            image = images_by_index[image]
        resolved.append(image)
    return tuple(resolved)


def read_tsv_benchmark(path: Path, metric: str, *, limit: int | None, vqa_suffix: str) -> list[BenchmarkRow]:
    """The first ``limit`` rows (all with None) of a VLMEvalKit TSV, prompts built for ``metric``."""
    columns, records = read_tsv_records(path)
    _check_columns(path, columns, metric)
    images_by_index = {
        record["index"]: record["image"] for record in records
        if len(record.get("image") or "") > _IMAGE_REFERENCE_MAX_LENGTH
    }
    letters = option_columns(columns)
    rows = []
    for number, record in enumerate(records[:limit], 1):
        index = record["index"] or f"number {number} (no index)"
        question, answer = record["question"] or "", (record["answer"] or "").strip()
        if not question:
            raise row_error(path, index, "has an empty question")
        if not answer:
            raise row_error(path, index, "has an empty answer; a split without answers cannot be scored")
        options = {}
        if metric == MULTIPLE_CHOICE:
            options = {letter: record[letter] for letter in letters if record.get(letter)}
            if len(options) < 2:
                raise row_error(
                    path, index, f"has {len(options)} option(s) {sorted(options)}; a multiple-choice row needs two or more"
                )
            if answer not in options:
                raise row_error(path, index, f"answer {answer!r} is not one of its option letters {sorted(options)}")
            prompt, answers = multiple_choice_prompt(question, options, record.get("hint") or ""), (answer,)
        else:
            prompt, answers = question + vqa_suffix, tuple(_python_list(answer) or [answer])
        rows.append(BenchmarkRow(
            index=index, images=_row_images(path, index, record, images_by_index), prompt=prompt, answers=answers,
            options=options, category=record.get("category") or "",
        ))
    return rows
