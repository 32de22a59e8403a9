"""A sentencepiece ``.model`` whose pieces include the special tokens as control symbols."""

from __future__ import annotations

import hashlib
import json
import os

import sentencepiece

from megatron_vl.tokenizer.hf_tokenizer import hf_tokenizer_config
from megatron_vl.tokenizer.tokenizer import Tokenizer, resolve_special_ids


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model. Note that sentencepiece prefixes each encoded text with a word boundary
    (``add_dummy_prefix``), so text segments encoded one by one each start as if after a space."""

    def __init__(self, model: bytes, *, path: str) -> None:
        self._model = model
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model)
        except (RuntimeError, OSError) as error:
            raise ValueError(f"{path} is not a valid sentencepiece model: {error}") from error

        def piece_id(token: str) -> int | None:
            token_id = self._sp.piece_to_id(token)
            return None if self._sp.is_unknown(token_id) or self._sp.id_to_piece(token_id) != token else token_id

        special_ids = resolve_special_ids(piece_id, path)
        self._token_of_id = {token_id: token for token, token_id in special_ids.items()}
        super().__init__(path=path, special_ids=special_ids, fingerprint=hashlib.sha256(model).hexdigest())

    @classmethod
    def from_file(cls, path: str) -> "SentencePieceTokenizer":
        try:
            with open(path, "rb") as file:
                return cls(file.read(), path=path)
        except OSError as error:
            raise ValueError(f"cannot read the tokenizer file {path}: {error}") from error

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts)

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        # sentencepiece renders control symbols as nothing, so special tokens are spliced in here.
        pieces, run = [], []
        for token_id in ids:
            token = self._token_of_id.get(token_id)
            if token is None:
                run.append(token_id)
                continue
            if run:
                pieces.append(self._sp.decode(run))
                run = []
            if not skip_special:
                pieces.append(token)
        if run:
            pieces.append(self._sp.decode(run))
        return "".join(pieces)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def save_hf(self, directory: str) -> None:
        """Write tokenizer.model (this model, unchanged) and a tokenizer_config.json.

        No tokenizer.json: converting a sentencepiece model to one needs its protobuf schema
        (the ``protobuf`` package); transformers does that conversion when it loads the folder.
        """
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "tokenizer.model"), "wb") as file:
            file.write(self._model)
        config = hf_tokenizer_config(self.special_ids)
        config["tokenizer_class"] = "LlamaTokenizer"
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as file:
            json.dump(config, file, ensure_ascii=False, indent=2)
