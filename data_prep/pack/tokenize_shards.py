"""Pack's first pass: each sample shard becomes a tokenized shard (``tokenized_shard``) in the pack's
work directory. Images and video frames are not decoded or copied here: the second pass copies their
bytes straight from the sample shard.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

from data_prep.pack.document_tokens import (
    TOKENIZER_LACKS_SPECIAL_TOKEN, fit_to_seq_len, lacking_special_tokens, tokenize_sample,
)
from data_prep.pack.tokenized_shard import TokenizedDocument, TokenizedShard, save_tokenized_shard
from data_prep.sample_shards.reader import index_shard
from megatron_vl.data.images import ImageSettings
from megatron_vl.files import sha256_file
from megatron_vl.tokenizer import Tokenizer, load_tokenizer


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizeTask:
    """One sample shard to tokenize."""

    input_index: int
    """Position of its dataset among pack's inputs."""
    shard_path: str
    """The sample shard file."""
    sha256: str
    """Its digest according to the ingest manifest."""
    output_prefix: str
    """Path prefix of its tokenized shard's three files."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizeSettings:
    """What every tokenize task of one pack shares."""

    tokenizer_path: str
    """The tokenizer file or directory."""
    image_settings: ImageSettings
    """The inputs' image settings."""
    seq_len: int
    """Packed sequence length: longer documents follow ``long_doc``."""
    long_doc: str
    """``split`` or ``drop``."""


_worker: dict = {}


def init_worker(settings: TokenizeSettings) -> None:
    """Load what the tasks of this process share (the tokenizer) once."""
    _worker.update(settings=settings, tokenizer=load_tokenizer(settings.tokenizer_path))


def tokenize_shard(task: TokenizeTask) -> TokenizedShard:
    """Tokenize every sample of the shard into its tokenized shard; returns the ``.docs.json`` written."""
    settings: TokenizeSettings = _worker["settings"]
    tokenizer: Tokenizer = _worker["tokenizer"]
    _check_sha256(task.shard_path, task.sha256)
    shard = os.path.basename(task.shard_path)
    token_parts, loss_parts, records = [], [], []
    dropped: Counter[str] = Counter()
    samples = split = offset = 0
    for sample in index_shard(task.shard_path):
        samples += 1
        if lacking_special_tokens(sample.meta, tokenizer):
            dropped[TOKENIZER_LACKS_SPECIAL_TOKEN] += 1
            continue
        where = f"{task.shard_path} sample {sample.key}"
        document = tokenize_sample(sample.meta, tokenizer, settings.image_settings, where=where)
        parts, reason = fit_to_seq_len(
            document, seq_len=settings.seq_len, policy=settings.long_doc,
            vision_start_id=tokenizer.vision_start_id, vision_end_id=tokenizer.vision_end_id,
            video_pad_id=tokenizer.video_pad_id,
        )
        if reason is not None:
            dropped[reason] += 1
        split += len(parts) > 1
        for part in parts:
            records.append(TokenizedDocument(
                key=sample.key,
                kind=part.kind,
                origin=sample.meta.source,
                part=part.part,
                offset=offset,
                length=len(part),
                image_grids=part.image_grids,
                image_spans=[sample.image_spans[k] for k in part.image_refs],
                video_grids=part.video_grids,
                video_seconds=part.video_seconds,
                video_spans=[sample.video_spans[k] for k in part.video_refs],
            ))
            token_parts.append(part.tokens)
            loss_parts.append(part.loss)
            offset += len(part)
    tokenized = TokenizedShard(
        input=task.input_index,
        shard=shard,
        shard_path=task.shard_path,
        samples=samples,
        split_documents=split,
        dropped=dict(sorted(dropped.items())),
        documents=records,
    )
    save_tokenized_shard(task.output_prefix, tokenized, token_parts, loss_parts)
    return tokenized


def _check_sha256(path: str, expected: str) -> None:
    actual = sha256_file(Path(path))
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 {actual} differs from {expected} in its ingest_manifest.json; the shard "
            "changed or is damaged since ingest: re-run ingest for that dataset"
        )
