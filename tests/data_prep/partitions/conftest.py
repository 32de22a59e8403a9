"""The raw corpus the partition tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep import train_tokenizer
from data_prep.demo import command as demo_corpus
from tests.data_prep.cli import run_subcommand


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """Raw JSONL files whose duplicate images lie in other partitions, and a tokenizer."""
    root = tmp_path_factory.mktemp("partitioned")
    raw = root / "raw"
    run_subcommand(demo_corpus, "--out", raw, "--samples-per-kind", 8, "--long-samples", 0, "--min-side", 56,
                   "--max-side", 84, "--kinds", "caption", "ocr", "interleaved", "--seed", 5, "--jpeg-fraction", 0)
    captions = (raw / "caption.jsonl").read_text().splitlines()
    ocr = (raw / "ocr.jsonl").read_text().splitlines()
    # Sorted inputs: caption, dup_a, interleaved, ocr, zz_dup; partitions 0: caption, ocr; 1: dup_a, zz_dup;
    # 2: interleaved. Both dup files repeat documents of partition 0, zz_dup also one of dup_a; the repeated
    # interleaved document stays (its kind is not deduplicated by default).
    interleaved = (raw / "interleaved.jsonl").read_text().splitlines()
    (raw / "dup_a.jsonl").write_text("\n".join([*captions[:3], interleaved[0]]) + "\n")
    (raw / "zz_dup.jsonl").write_text("\n".join([ocr[1], ocr[4], captions[0]]) + "\n")
    run_subcommand(train_tokenizer, "--input", raw, "--vocab-size", 512, "--out", root / "tokenizer")
    return raw, root / "tokenizer"
