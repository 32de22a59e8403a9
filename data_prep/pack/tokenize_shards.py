"""Pack's first pass: each sample shard becomes tokenized documents in the pack's work directory.

For sample shard ``samples-000003.tar`` of input 1 it writes ``001-samples-000003.tokens.npy``
(int32, the tokens of all its documents back to back), ``.loss.npy`` (uint8, the loss flag of
each token) and, last, ``.docs.json`` (where each document lies in those arrays, its kind,
provenance and where its images lie inside the sample shard). The ``.docs.json`` is the mark that
the shard is done: a rerun skips shards that have one. Images are not decoded or copied here: the
second pass copies their bytes straight from the sample shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from data_prep.pack.document_tokens import fit_to_seq_len, tokenize_sample
from data_prep.sample_shards import index_shard
from megatron_vl.data.images import ImageSettings
from megatron_vl.files import atomic_file, sha256_file, write_atomically
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
    spill_prefix: str
    """Path prefix of the three output files."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizeSettings:
    """What every tokenize task of one pack shares."""

    tokenizer_path: str
    """The tokenizer file or directory."""
    image_settings: dict
    """The inputs' image settings (``ImageSettings`` fields)."""
    seq_len: int
    """Packed sequence length: longer documents follow ``long_doc``."""
    long_doc: str
    """``split`` or ``drop``."""


_worker: dict = {}


def init_worker(settings: TokenizeSettings) -> None:
    """Load what the tasks of this process share (the tokenizer) once."""
    _worker.update(
        settings=settings,
        tokenizer=load_tokenizer(settings.tokenizer_path),
        image_settings=ImageSettings.from_dict(settings.image_settings),
    )


def spill_done(prefix: str) -> bool:
    return os.path.exists(prefix + ".docs.json")


def load_spill_index(prefix: str) -> dict:
    with open(prefix + ".docs.json", encoding="utf-8") as file:
        return json.load(file)


def tokenize_shard(task: TokenizeTask) -> dict:
    """Tokenize every sample of the shard; returns the spill index (also written as .docs.json)."""
    settings: TokenizeSettings = _worker["settings"]
    tokenizer: Tokenizer = _worker["tokenizer"]
    _check_sha256(task.shard_path, task.sha256)
    shard = os.path.basename(task.shard_path)
    token_parts, loss_parts, records = [], [], []
    dropped: Counter[str] = Counter()
    samples = split = offset = 0
    for sample in index_shard(task.shard_path):
        samples += 1
        where = f"{task.shard_path} sample {sample.key}"
        document = tokenize_sample(sample.meta, tokenizer, _worker["image_settings"], where=where)
        parts, reason = fit_to_seq_len(
            document, seq_len=settings.seq_len, policy=settings.long_doc,
            vision_start_id=tokenizer.vision_start_id, vision_end_id=tokenizer.vision_end_id,
        )
        if reason is not None:
            dropped[reason] += 1
        split += len(parts) > 1
        for part in parts:
            records.append({
                "key": sample.key,
                "kind": part.kind,
                "origin": sample.meta.get("source"),
                "part": list(part.part),
                "offset": offset,
                "length": len(part),
                "image_grids": [list(grid) for grid in part.image_grids],
                "image_spans": [sample.image_spans[k] for k in part.image_refs],
            })
            token_parts.append(part.tokens)
            loss_parts.append(part.loss)
            offset += len(part)
    spill = {
        "input": task.input_index,
        "shard": shard,
        "shard_path": task.shard_path,
        "samples": samples,
        "split_documents": split,
        "dropped": dict(sorted(dropped.items())),
        "documents": records,
    }
    _save_array(task.spill_prefix + ".tokens.npy", token_parts, np.int32)
    _save_array(task.spill_prefix + ".loss.npy", loss_parts, np.uint8)
    write_atomically(task.spill_prefix + ".docs.json", json.dumps(spill, sort_keys=True).encode())
    return spill


def _save_array(path: str, parts: list[np.ndarray], dtype) -> None:
    array = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    with atomic_file(path) as file:
        np.save(file, array.astype(dtype, copy=False), allow_pickle=False)


def _check_sha256(path: str, expected: str) -> None:
    actual = sha256_file(Path(path))
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 {actual} differs from {expected} in its ingest_manifest.json; the shard "
            "changed or is damaged since ingest: re-run ingest for that dataset"
        )
