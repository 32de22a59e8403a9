"""One benchmark file read into rows: what to show the model, and what its answer is scored against."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from pathlib import Path

from PIL import Image

from megatron_vl.data.images import load_image

MULTIPLE_CHOICE, ANLS, RELAXED_ACCURACY, EXACT_MATCH, GROUNDING, CIDER = (
    "multiple_choice", "anls", "relaxed_accuracy", "exact_match", "grounding", "cider",
)
TSV_METRICS = (MULTIPLE_CHOICE, ANLS, RELAXED_ACCURACY, EXACT_MATCH)
JSONL_METRICS = (GROUNDING, CIDER)
METRICS = TSV_METRICS + JSONL_METRICS


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchmarkRow:
    index: str
    """The row's ``index`` column (or, in JSONL without one, its line number)."""
    images: tuple[str | Path, ...]
    """Each image as base64 text (``str``) or a file (``Path``), decoded only when the row is answered."""
    prompt: str
    """The user's text after the images."""
    answers: tuple[str, ...] = ()
    """What the answer is scored against: the correct option's letter, the acceptable answers, or the reference
    captions."""
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    """Multiple choice: option letter -> option text."""
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    """Grounding: the ground-truth boxes ``[x1, y1, x2, y2]`` in pixels of the original image."""
    category: str = ""
    """The row's category (empty where the file has none)."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    path: Path
    metric: str
    rows: list[BenchmarkRow]


def row_error(path: Path, index: str, message: str) -> ValueError:
    return ValueError(f"{path}: row {index}: {message}")


def decode_image(path: Path, row: BenchmarkRow, image: str | Path) -> Image.Image:
    """One image of ``row`` as the RGB picture the processor sees; a ValueError naming file and row otherwise."""
    if isinstance(image, Path):
        if not image.is_file():
            raise row_error(path, row.index, f"image file {image} does not exist")
        source: bytes | Path = image
    else:
        try:
            text = image.split(",", 1)[1] if image.startswith("data:") else image
            source = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as error:
            raise row_error(path, row.index, f"image is not valid base64 ({error})") from None
    try:
        return load_image(source)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise row_error(path, row.index, f"image does not decode ({error})") from None


def decode_row_images(path: Path, row: BenchmarkRow) -> list[Image.Image]:
    return [decode_image(path, row, image) for image in row.images]
