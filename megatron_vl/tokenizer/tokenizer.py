"""The tokenizer interface the data pipeline and the exporter use, whatever the file format."""

from __future__ import annotations

import abc
from collections.abc import Callable

from megatron_vl.tokenizer.special_tokens import REQUIRED_SPECIAL_TOKENS, SPECIAL_TOKENS


class Tokenizer(abc.ABC):
    """Text <-> ids with the multimodal special tokens at fixed ids.

    ``encode`` never turns text into a special token: a literal ``<|image_pad|>`` typed in a
    document is ordinary text. Special tokens enter a sequence only by id (pack inserts them).
    """

    def __init__(self, *, path: str, special_ids: dict[str, int], fingerprint: str) -> None:
        self.path = path
        """Where the tokenizer was loaded from (for error messages)."""
        self.special_ids = dict(special_ids)
        """Id of each token of ``SPECIAL_TOKENS`` the tokenizer has: all the required ones, and the optional
        ``<think>`` / ``</think>`` where it has them."""
        self.fingerprint = fingerprint
        """sha256 of the tokenizer's content; manifests record it so training can refuse a mismatch."""
        self._check_text_never_special()

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, with no special token and nothing added around it."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode`` of each text; backends override it with a faster batched call."""
        return [self.encode(text) for text in texts]

    @abc.abstractmethod
    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        """The text of ``ids``; special tokens appear literally unless ``skip_special``."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (the largest id + 1), special tokens included."""

    @abc.abstractmethod
    def save_hf(self, directory: str) -> None:
        """Write the files a Hugging Face model folder ships for this tokenizer."""

    @property
    def eod_id(self) -> int:
        """``<|endoftext|>``: ends every document in a packed sequence."""
        return self.special_ids["<|endoftext|>"]

    @property
    def pad_id(self) -> int:
        """Padding id: ``<|endoftext|>``, as in Qwen2-VL (padding is never in the loss)."""
        return self.special_ids["<|endoftext|>"]

    @property
    def im_start_id(self) -> int:
        return self.special_ids["<|im_start|>"]

    @property
    def im_end_id(self) -> int:
        return self.special_ids["<|im_end|>"]

    @property
    def vision_start_id(self) -> int:
        return self.special_ids["<|vision_start|>"]

    @property
    def vision_end_id(self) -> int:
        return self.special_ids["<|vision_end|>"]

    @property
    def image_pad_id(self) -> int:
        return self.special_ids["<|image_pad|>"]

    @property
    def video_pad_id(self) -> int:
        return self.special_ids["<|video_pad|>"]

    @property
    def think_id(self) -> int | None:
        """``<think>``, or None when the tokenizer lacks it."""
        return self.special_ids.get("<think>")

    @property
    def think_end_id(self) -> int | None:
        """``</think>``, or None when the tokenizer lacks it."""
        return self.special_ids.get("</think>")

    def _check_text_never_special(self) -> None:
        special = set(self.special_ids.values())
        for token in SPECIAL_TOKENS:
            if special.intersection(self.encode(f"a {token} b{token}")):
                raise ValueError(
                    f"tokenizer {self.path}: encoding the text {token!r} gives a special-token id, so user "
                    "text could forge image placeholders; declare the token as a control (sentencepiece) or "
                    "special added token (tokenizer.json) instead of a user-defined one"
                )


def resolve_special_ids(lookup: Callable[[str], int | None], path: str) -> dict[str, int]:
    """Ids of the ``SPECIAL_TOKENS`` the tokenizer has, via ``lookup``; a ValueError names every missing
    required one (the optional ``<think>`` / ``</think>`` may be missing)."""
    found = {token: lookup(token) for token in SPECIAL_TOKENS}
    missing = [token for token in REQUIRED_SPECIAL_TOKENS if found[token] is None]
    if missing:
        raise ValueError(
            f"tokenizer {path} lacks the special tokens {missing}; megatron-vl needs all of "
            f"{list(REQUIRED_SPECIAL_TOKENS)}. Add them to the tokenizer (as special added tokens / control symbols) "
            "or train one with `python -m data_prep train-tokenizer`"
        )
    found = {token: token_id for token, token_id in found.items() if token_id is not None}
    ids = list(found.values())
    if len(set(ids)) != len(ids):
        raise ValueError(f"tokenizer {path} maps two special tokens to the same id: {found}")
    return found
