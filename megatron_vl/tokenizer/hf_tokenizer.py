"""A Hugging Face ``tokenizers`` tokenizer.json (what Qwen2 and MiMo-VL ship)."""

from __future__ import annotations

import hashlib
import json
import os

import tokenizers

from megatron_vl.tokenizer.special_tokens import SPECIAL_TOKENS
from megatron_vl.tokenizer.tokenizer import Tokenizer, resolve_special_ids

MODEL_MAX_LENGTH = 32768


class HFTokenizer(Tokenizer):
    """A tokenizer.json. Its content (canonical JSON) is what the fingerprint hashes."""

    def __init__(self, content: dict, *, path: str) -> None:
        self._content = content
        try:
            self._full = tokenizers.Tokenizer.from_str(json.dumps(content))
        except Exception as error:
            raise ValueError(f"{path} is not a valid Hugging Face tokenizer.json: {error}") from error
        special_ids = resolve_special_ids(self._full.token_to_id, path)
        # Encoding runs without the special added tokens (and without ours, even where a file marks
        # them non-special, as Qwen3 does for <think>), so their text can only become ordinary pieces.
        unmatched = {
            added["content"] for added in content.get("added_tokens", [])
            if added.get("special") or added["content"] in SPECIAL_TOKENS
        }
        encoder_content = dict(content)
        encoder_content["added_tokens"] = [
            added for added in content.get("added_tokens", []) if added["content"] not in unmatched
        ]
        self._encoder = tokenizers.Tokenizer.from_str(json.dumps(encoder_content))
        self._skipped_ids = {self._full.token_to_id(token) for token in unmatched} | set(special_ids.values())
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        super().__init__(
            path=path,
            special_ids=special_ids,
            fingerprint=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        )

    @classmethod
    def from_file(cls, path: str) -> "HFTokenizer":
        try:
            with open(path, encoding="utf-8") as file:
                content = json.load(file)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the tokenizer file {path}: {error}") from error
        if not isinstance(content, dict) or "model" not in content:
            raise ValueError(f"{path} is not a Hugging Face tokenizer.json (no 'model' entry)")
        return cls(content, path=path)

    def encode(self, text: str) -> list[int]:
        return self._encoder.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._encoder.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        if skip_special:
            ids = [token_id for token_id in ids if token_id not in self._skipped_ids]
        return self._full.decode(list(ids), skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return max(self._full.get_vocab(with_added_tokens=True).values()) + 1

    def save_hf(self, directory: str) -> None:
        """Write tokenizer.json (this content, unchanged) and a tokenizer_config.json.

        The config names ``Qwen2Tokenizer`` (whose pipeline a trained tokenizer uses), eos and pad
        ``<|endoftext|>`` as in Qwen2-VL's base models, and the special tokens.
        """
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as file:
            json.dump(self._content, file, ensure_ascii=False, indent=2)
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as file:
            json.dump(hf_tokenizer_config(self.special_ids), file, ensure_ascii=False, indent=2)


def hf_tokenizer_config(special_ids: dict[str, int]) -> dict:
    """tokenizer_config.json for a Qwen2-style tokenizer with these special-token ids."""
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "added_tokens_decoder": {
            str(token_id): {
                "content": token, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True,
            }
            for token, token_id in sorted(special_ids.items(), key=lambda item: item[1])
        },
        "additional_special_tokens": [
            token for token in SPECIAL_TOKENS if token in special_ids and token != "<|endoftext|>"
        ],
    }
