"""One tokenizer interface over Hugging Face tokenizer.json and sentencepiece models, with the
multimodal special tokens (``SPECIAL_TOKENS``; ``<think>`` / ``</think>`` optional) at fixed ids."""

from __future__ import annotations

import os

from megatron_vl.tokenizer.bpe_training import train_bpe_tokenizer
from megatron_vl.tokenizer.hf_tokenizer import HFTokenizer
from megatron_vl.tokenizer.sentencepiece_tokenizer import SentencePieceTokenizer
from megatron_vl.tokenizer.special_tokens import (
    OPTIONAL_SPECIAL_TOKENS, REQUIRED_SPECIAL_TOKENS, SPECIAL_TOKENS, TRAINED_SPECIAL_IDS,
)
from megatron_vl.tokenizer.tokenizer import Tokenizer

__all__ = [
    "HFTokenizer", "OPTIONAL_SPECIAL_TOKENS", "REQUIRED_SPECIAL_TOKENS", "SPECIAL_TOKENS", "SentencePieceTokenizer",
    "TRAINED_SPECIAL_IDS", "Tokenizer", "load_tokenizer", "train_bpe_tokenizer",
]


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer.json, a sentencepiece ``.model``, or a directory holding one of them
    (tokenizer.json first, then tokenizer.model)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("tokenizer.json", "tokenizer.model"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return load_tokenizer(candidate)
        raise ValueError(
            f"tokenizer directory {path} holds neither tokenizer.json nor tokenizer.model; point "
            "--tokenizer at a tokenizer file or train one with `python -m data_prep train-tokenizer`"
        )
    if not os.path.isfile(path):
        raise ValueError(f"tokenizer {path} does not exist; pass a tokenizer.json, a .model file or their directory")
    if path.endswith(".json"):
        return HFTokenizer.from_file(path)
    if path.endswith(".model"):
        return SentencePieceTokenizer.from_file(path)
    raise ValueError(
        f"tokenizer {path}: unknown format; expected a Hugging Face tokenizer.json (*.json) or a "
        "sentencepiece model (*.model)"
    )
