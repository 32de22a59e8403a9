"""What pack counts: tokens per data kind, the document-length histogram, and the summary it prints."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from data_prep.pack.document_tokens import LACKING_SPECIAL_TOKEN_FIX, TOKENIZER_LACKS_SPECIAL_TOKEN
from megatron_vl.data.packed_format import PackedSample
from megatron_vl.data.packed_manifest import KindStats, PackedManifest
from megatron_vl.tokenizer import OPTIONAL_SPECIAL_TOKENS


def histogram_edges(seq_len: int) -> list[int]:
    """Document length buckets: 1, 64, 128, 256, ... powers of two below seq_len, then seq_len + 1."""
    edges = [1] + [2**k for k in range(6, 32) if 2**k < seq_len] + [seq_len + 1]
    return sorted(set(edges))


def document_kind_stats(sample: PackedSample, image_pad_id: int, video_pad_id: int) -> Iterator[tuple[str, KindStats]]:
    """(kind, counts) of each document of a packed sample, counted from its tokens and loss mask (images and
    videos from its record, which ``sample_checks`` holds to its vision markers)."""
    cu = sample.cu_seqlens
    for document, start, end in zip(sample.documents, cu[:-1].tolist(), cu[1:].tolist()):
        tokens = sample.tokens[start:end]
        yield document.kind, KindStats(
            documents=1, tokens=end - start, image_tokens=int(np.count_nonzero(tokens == image_pad_id)),
            loss_tokens=int(sample.loss_mask[start:end].sum()), images=document.num_images,
            video_tokens=int(np.count_nonzero(tokens == video_pad_id)), videos=document.num_videos,
        )


def print_summary(manifest: PackedManifest, out: str) -> None:
    print(f"\n{out}: {manifest.num_samples} sequences of {manifest.seq_len} tokens in {len(manifest.shards)} shards, "
          f"{manifest.num_documents} documents, padding {100 * manifest.padding_fraction:.2f}%")
    print(f"  {'kind':<16}{'documents':>11}{'tokens':>14}{'image tok':>14}{'video tok':>14}{'loss tok':>14}"
          f"{'images':>9}{'videos':>9}")
    for kind, stats in manifest.tokens_per_kind.items():
        print(f"  {kind:<16}{stats.documents:>11}{stats.tokens:>14}{stats.image_tokens:>14}{stats.video_tokens:>14}"
              f"{stats.loss_tokens:>14}{stats.images:>9}{stats.videos:>9}")
    print(f"  split into parts (longer than {manifest.seq_len}): {manifest.split_documents} documents")
    print(f"  video time positions: {manifest.pack_settings.tokens_per_second} per second")
    if manifest.dropped:
        for reason, count in manifest.dropped.items():
            print(f"  dropped ({reason}): {count} documents")
        if TOKENIZER_LACKS_SPECIAL_TOKEN in manifest.dropped:
            lacking = [token for token in OPTIONAL_SPECIAL_TOKENS if token not in manifest.special_ids]
            print(f"  (the tokenizer lacks {', '.join(lacking)}: {LACKING_SPECIAL_TOKEN_FIX})")
    else:
        print("  dropped: none")
