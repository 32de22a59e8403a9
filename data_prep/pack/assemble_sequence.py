"""Documents laid back to back into one packed sequence: labels, loss mask, positions, padding."""

from __future__ import annotations

import numpy as np

from data_prep.pack.document_tokens import Document
from megatron_vl.data.mrope import mrope_position_ids
from megatron_vl.data.packed_format import DocumentSource, PackedDocument, PackedSample


def assemble_sequence(
    documents: list[Document],
    images: list[bytes],
    videos: list[list[bytes]],
    *,
    sources: list[DocumentSource],
    origins: list[dict],
    seq_len: int,
    pad_id: int,
    image_pad_id: int,
    video_pad_id: int,
    vision_start_id: int,
    spatial_merge_size: int,
    tokens_per_second: int,
) -> PackedSample:
    """One packed sample from ``documents`` (in order), their images' PNG bytes (in order), their videos'
    frames' PNG bytes (in order), and each document's source sample and that sample's origin (its ingest
    ``source``)."""
    lengths = [len(document) for document in documents]
    used = sum(lengths)
    assert used <= seq_len and len(sources) == len(origins) == len(documents)
    tokens = np.full(seq_len, pad_id, dtype=np.int32)
    labels = np.full(seq_len, pad_id, dtype=np.int32)
    loss_mask = np.zeros(seq_len, dtype=np.uint8)
    positions = np.zeros((3, seq_len), dtype=np.int32)
    records = []
    start = 0
    for document, source, origin in zip(documents, sources, origins):
        end = start + len(document)
        tokens[start:end] = document.tokens
        # Token j predicts token j + 1 of the same document; the last one predicts nothing.
        labels[start : end - 1] = document.tokens[1:]
        loss_mask[start : end - 1] = document.loss[1:]
        positions[:, start:end] = mrope_position_ids(
            document.tokens, document.image_grids, image_pad_id=image_pad_id,
            vision_start_id=vision_start_id, spatial_merge_size=spatial_merge_size,
            video_grid_thw=document.video_grids, second_per_grid_ts=document.video_seconds,
            video_pad_id=video_pad_id, tokens_per_second=tokens_per_second,
        )
        records.append(PackedDocument(
            kind=document.kind,
            source=source,
            origin=origin,
            part=document.part,
            length=len(document),
            num_images=len(document.image_grids),
            loss_tokens=int(document.loss[1:].sum()),
            num_videos=len(document.video_grids),
        ))
        start = end
    return PackedSample(
        tokens=tokens,
        labels=labels,
        loss_mask=loss_mask,
        position_ids=positions,
        seq_lens=np.array(lengths, dtype=np.int32),
        images=images,
        image_grid_thw=[grid for document in documents for grid in document.image_grids],
        documents=records,
        num_padding=seq_len - used,
        videos=videos,
        video_grid_thw=[grid for document in documents for grid in document.video_grids],
        second_per_grid_ts=[seconds for document in documents for seconds in document.video_seconds],
    )
