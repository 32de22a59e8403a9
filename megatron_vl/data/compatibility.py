"""Opening a packed dataset for a run, refusing one made for another sequence length, tokenizer, images or
video time scale."""

from __future__ import annotations

import os

from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import PackedDataset
from megatron_vl.data.storage import DEFAULT_RETRY_SECONDS


def open_compatible_dataset(
    directory: str | os.PathLike,
    *,
    seq_len: int,
    tokenizer_fingerprint: str,
    image_settings: ImageSettings,
    tokens_per_second: int,
    document_alignment: int = 1,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
) -> PackedDataset:
    """The packed dataset in ``directory`` (a local folder or a URL), after checking its manifest against the run's
    settings (``tokens_per_second``: the model's ``vision.tokens_per_second``; ``document_alignment``: the padding
    of every document the run needs, 2 x CP under context parallelism); ``retry_seconds`` bounds the
    retries of a URL's transient errors (``storage.DatasetFiles``)."""
    try:
        dataset = PackedDataset(directory, retry_seconds=retry_seconds)
        dataset.manifest.check_compatible(
            seq_len=seq_len, tokenizer_fingerprint=tokenizer_fingerprint, image_settings=image_settings,
            tokens_per_second=tokens_per_second, document_alignment=document_alignment,
        )
    except ValueError as error:
        raise ValueError(f"packed dataset {directory}: {error}") from None
    if "<|image_pad|>" not in dataset.manifest.special_ids:
        raise ValueError(
            f"packed dataset {directory}: its manifest records no <|image_pad|> id; re-pack it with this "
            "version's `python -m data_prep pack`"
        )
    if len(dataset) == 0:
        raise ValueError(f"packed dataset {directory} holds no samples; leave it out or re-pack it")
    return dataset
