"""Train a small byte-level BPE tokenizer with Qwen2's text pipeline and the special tokens at ids 0-8."""

from __future__ import annotations

import json
from collections.abc import Iterable

import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, trainers

from megatron_vl.tokenizer.hf_tokenizer import HFTokenizer
from megatron_vl.tokenizer.special_tokens import SPECIAL_TOKENS

BYTE_ALPHABET_SIZE = 256


def min_vocab_size() -> int:
    """The smallest vocabulary a byte-level BPE can have: every byte plus the special tokens."""
    return BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> HFTokenizer:
    """Learn merges on ``texts`` until the vocabulary (special tokens included) has ``vocab_size``
    ids, or fewer when the texts offer no more merges seen ``min_frequency`` times.

    The normalizer, pre-tokenizer and decoder are Qwen2's (NFC, its split regex with single
    digits, byte-level), so transformers' ``Qwen2Tokenizer`` reproduces it exactly.
    """
    if vocab_size < min_vocab_size():
        raise ValueError(
            f"vocab size {vocab_size} is below the minimum {min_vocab_size()} "
            f"({BYTE_ALPHABET_SIZE} bytes + {len(SPECIAL_TOKENS)} special tokens); raise --vocab-size"
        )
    # Imported here: transformers takes seconds to import, and only training needs Qwen2's regex.
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[tokenizers.AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(json.loads(tokenizer.to_str()), path="<trained>")
