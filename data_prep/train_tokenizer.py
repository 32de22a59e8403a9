"""Train a small byte-level BPE tokenizer (with the multimodal special tokens) on raw text.

Reads the text of raw JSONL documents of any kind (the same schema as ingest; records ingest
would reject are skipped and counted) and plain *.txt files (one text per line). The special
tokens get ids 0-8 in the order <|endoftext|>, <|im_start|>, <|im_end|>, <|vision_start|>,
<|vision_end|>, <|image_pad|>, <|video_pad|>, <think>, </think>; the vocabulary, special tokens
included, has at most --vocab-size ids. Writes tokenizer.json and tokenizer_config.json to --out
(loadable by megatron_vl.tokenizer.load_tokenizer and by transformers' AutoTokenizer).

example:
  python -m data_prep train-tokenizer --input demo_raw/ --vocab-size 4096 --out demo_tokenizer/
"""

from __future__ import annotations

import argparse
import collections
import gzip
import os
from collections.abc import Iterator

from data_prep.ingest.raw_schema import RejectError, parse_record
from data_prep.sample_shards.sample_meta import KINDS
from megatron_vl.progress import track
from megatron_vl.tokenizer import train_bpe_tokenizer

TEXT_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE_OR_DIR",
                        help="raw JSONL (*.jsonl, *.jsonl.gz) or text (*.txt) files, or directories of them")
    parser.add_argument("--vocab-size", type=int, default=4096, help="most ids, special tokens included (default 4096)")
    parser.add_argument("--out", required=True, help="output directory for tokenizer.json and tokenizer_config.json")
    parser.add_argument("--kind", choices=KINDS, help="kind of JSONL records that have no 'kind' field")
    parser.add_argument("--min-frequency", type=int, default=2,
                        help="learn only merges seen at least this often (default 2)")


def _find_text_files(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        if os.path.isdir(path):
            found.extend(sorted(
                os.path.join(folder, name)
                for folder, _, names in os.walk(path) for name in names if name.endswith(TEXT_SUFFIXES)
            ))
        elif os.path.isfile(path) and path.endswith(TEXT_SUFFIXES):
            found.append(path)
        else:
            raise ValueError(f"--input {path} is not a *.jsonl, *.jsonl.gz or *.txt file or a directory of them")
    if not found:
        raise ValueError(f"no *.jsonl, *.jsonl.gz or *.txt files under {paths}")
    return found


class _TextReader:
    """Streams the texts of the input files and counts what it reads and skips."""

    def __init__(self, files: list[str], default_kind: str | None) -> None:
        self.files = files
        self.default_kind = default_kind
        self.documents = 0
        self.characters = 0
        self.skipped: collections.Counter[str] = collections.Counter()

    def __iter__(self) -> Iterator[str]:
        for path in track(self.files, unit="file", desc="train-tokenizer"):
            with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as file:
                for line in file:
                    if not line.strip():
                        continue
                    texts = [line.decode("utf-8", errors="replace")] if path.endswith(".txt") else self._texts(line)
                    for text in texts:
                        self.characters += len(text)
                        yield text
                    self.documents += bool(texts)

    def _texts(self, line: bytes) -> list[str]:
        try:
            return list(parse_record(line, self.default_kind).texts())
        except RejectError as error:
            self.skipped[error.reason.value] += 1
            return []


def run(args: argparse.Namespace) -> int:
    reader = _TextReader(_find_text_files(args.input), args.kind)
    tokenizer = train_bpe_tokenizer(reader, args.vocab_size, min_frequency=args.min_frequency)
    tokenizer.save_hf(args.out)
    print(f"\ntrained a {tokenizer.vocab_size}-id tokenizer on {reader.documents} documents "
          f"({reader.characters / 1e6:.2f}M characters) from {len(reader.files)} files")
    if reader.skipped:
        print(f"  skipped {sum(reader.skipped.values())} records ingest would reject: {dict(reader.skipped)}")
    print(f"  special tokens: {tokenizer.special_ids}")
    print(f"  fingerprint:    {tokenizer.fingerprint}")
    print(f"  written to:     {args.out}")
    return 0
