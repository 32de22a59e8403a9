"""What a training stage reads: a weighted blend of packed datasets, batch sizes, workers, error tolerance."""

from __future__ import annotations

import dataclasses
import os

from megatron_vl.config.validation import (
    batch_sizes,
    blend_weight,
    distinct_blend,
    fraction,
    non_negative_int,
    positive_int,
    positive_number,
)
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.storage import DEFAULT_RETRY_SECONDS, is_url


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendEntry:
    """One packed dataset of a blend and its share of the samples."""

    path: str
    """Directory of the packed dataset (holding ``manifest.json``), as ``data_prep pack`` wrote it: a local path
    or a URL (``s3://bucket/packed/8192/caption``, ``https://...``) read by byte-range requests."""
    weight: float
    """Relative share of the training samples drawn from it; weights are normalised over the blend."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
            raise ValueError(f"BlendEntry.path must be a packed dataset directory, got {self.path!r}")
        object.__setattr__(self, "path", os.fspath(self.path))
        blend_weight("BlendEntry", self.path, self.weight)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The training data of one curriculum stage and how it is batched."""

    blend: tuple[BlendEntry, ...]
    """Packed datasets and their weights; ``(path, weight)`` pairs are accepted and converted."""
    seq_len: int
    """Tokens per packed sequence; every dataset's manifest must have this ``seq_len``."""
    global_batch_size: int
    """Sequences per optimizer step, over all data-parallel ranks and micro-batches."""
    micro_batch_size: int = 1
    """Sequences per forward pass of one data-parallel rank."""
    seed: int = 1234
    """Seeds the per-dataset shuffles; the sample stream is a function of the blend and this seed."""
    image_settings: ImageSettings = ImageSettings()
    """Image preprocessing the datasets must have been ingested with (checked against their manifests)."""
    num_workers: int = 2
    """DataLoader worker processes per rank decoding images into patches (0: in the training process)."""
    prefetch_factor: int = 2
    """Micro-batches each worker prepares ahead of the training loop."""
    max_corrupt_fraction: float = 0.001
    """Stop the run once more than this fraction of the samples read from one dataset were corrupt."""
    corrupt_check_after: int = 1000
    """Samples read from a dataset before ``max_corrupt_fraction`` is enforced (a few early errors are noise)."""
    remote_retry_seconds: float = DEFAULT_RETRY_SECONDS
    """For datasets at a URL: how long one request's transient errors (connection refused or reset, timeouts, 5xx)
    are retried, with backoff, before the run stops naming the URL."""
    eval_path: str | None = None
    """Held-out packed dataset for evaluation (read in its stored order), a path or a URL; None: no evaluation."""
    eval_samples: int | None = None
    """Evaluate on the first this many sequences of ``eval_path``; None: all of them."""

    def __post_init__(self) -> None:
        blend = tuple(entry if isinstance(entry, BlendEntry) else self._entry(entry) for entry in self.blend)
        object.__setattr__(self, "blend", blend)
        distinct_blend("DataConfig", [entry.path if is_url(entry.path) else os.path.abspath(entry.path) for entry in blend])
        for name in ("seq_len", "prefetch_factor", "corrupt_check_after"):
            positive_int("DataConfig", name, getattr(self, name))
        batch_sizes("DataConfig", self.global_batch_size, self.micro_batch_size)
        non_negative_int("DataConfig", "num_workers", self.num_workers)
        fraction("DataConfig", "max_corrupt_fraction", self.max_corrupt_fraction, upper_open=True)
        positive_number("DataConfig", "remote_retry_seconds", self.remote_retry_seconds)
        if not isinstance(self.image_settings, ImageSettings):
            raise ValueError("DataConfig.image_settings must be an ImageSettings (megatron_vl.data.images)")
        positive_int("DataConfig", "eval_samples", self.eval_samples, optional=True)
        if self.eval_samples is not None and self.eval_path is None:
            raise ValueError("DataConfig.eval_samples is set but eval_path is not; give the held-out dataset")

    @staticmethod
    def _entry(pair) -> BlendEntry:
        try:
            path, weight = pair
        except (TypeError, ValueError):
            raise ValueError(f"DataConfig.blend entry {pair!r} is not a BlendEntry or a (path, weight) pair") from None
        return BlendEntry(path=path, weight=weight)

    def micro_batches_per_step(self, data_parallel_size: int) -> int:
        """Micro-batches each data-parallel rank runs per optimizer step (gradient accumulation)."""
        per_rank_step = data_parallel_size * self.micro_batch_size
        if self.global_batch_size % per_rank_step:
            raise ValueError(
                f"DataConfig.global_batch_size={self.global_batch_size} is not divisible by data-parallel size "
                f"{data_parallel_size} x micro_batch_size {self.micro_batch_size} = {per_rank_step}; choose a "
                "global batch size that is a multiple of it, or change the micro-batch size or the number of ranks"
            )
        return self.global_batch_size // per_rank_step
