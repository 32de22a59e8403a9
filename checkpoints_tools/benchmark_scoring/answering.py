"""The model's answers to a benchmark's rows: images decoded ahead by worker threads, rows generated in batches.

While one batch generates, the next ``workers`` batches decode (base64 and image decoding, PIL releases the GIL
while it decodes), so at most ``workers + 1`` batches of pictures are in memory at once.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from PIL import Image

from checkpoints_tools.batched_generation import Generated
from checkpoints_tools.benchmark_scoring.benchmark_rows import Benchmark, BenchmarkRow, decode_row_images
from megatron_vl.data.images import ImageSettings
from megatron_vl.progress import ProgressBar


class Generator(Protocol):
    """What answers rows: ``BatchedGenerator`` (transformers) or ``VLLMGenerator``."""

    image_settings: ImageSettings

    def generate(
        self, images: list[list[Image.Image]], prompts: list[str], *, max_new_tokens: int, chat: bool
    ) -> list[Generated]: ...


def _decode_batch(benchmark: Benchmark, rows: list[BenchmarkRow]) -> list[list[Image.Image]]:
    return [decode_row_images(benchmark.path, row) for row in rows]


def answer_benchmark(
    generator: Generator,
    benchmark: Benchmark,
    *,
    batch_size: int,
    workers: int,
    max_new_tokens: int,
    chat: bool = True,
    progress: bool = True,
) -> tuple[list[str], list[tuple[int, int]]]:
    """Each row's generated text, and the (width, height) of its first image; ``chat`` as ``PromptSettings.chat``."""
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch size and workers must be at least 1, got {batch_size} and {workers}")
    rows = benchmark.rows
    batches = [rows[start:start + batch_size] for start in range(len(rows))[::batch_size]]
    predictions: list[str] = []
    sizes: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, ProgressBar(
        desc=benchmark.path.name, unit="row", total=len(rows), enabled=progress
    ) as bar:
        decoding: deque[Future] = deque(pool.submit(_decode_batch, benchmark, batch) for batch in batches[:workers])
        for number, batch in enumerate(batches):
            images = decoding.popleft().result()
            if number + workers < len(batches):
                decoding.append(pool.submit(_decode_batch, benchmark, batches[number + workers]))
            generated = generator.generate(images, [row.prompt for row in batch], max_new_tokens=max_new_tokens, chat=chat)
            predictions.extend(item.text for item in generated)
            sizes.extend(row_images[0].size for row_images in images)
            bar.update(len(batch))
    return predictions, sizes
