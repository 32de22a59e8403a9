"""What a training stage reads: a weighted blend of packed datasets, batch sizes, workers, error tolerance."""

from __future__ import annotations

import dataclasses
import math
import os

from megatron_vl.data.images import ImageSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendEntry:
    """One packed dataset of a blend and its share of the samples."""

    path: str
    """Directory of the packed dataset (holding ``manifest.json``), as ``data_prep pack`` wrote it."""
    weight: float
    """Relative share of the training samples drawn from it; weights are normalised over the blend."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
            raise ValueError(f"BlendEntry.path must be a packed dataset directory, got {self.path!r}")
        object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not (
            math.isfinite(self.weight) and self.weight > 0
        ):
            raise ValueError(
                f"BlendEntry weight of {self.path} must be a positive finite number, got {self.weight!r}; "
                "leave a dataset out of the blend instead of giving it weight 0"
            )


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
    eval_path: str | None = None
    """Held-out packed dataset for evaluation (read in its stored order); None: no evaluation."""
    eval_samples: int | None = None
    """Evaluate on the first this many sequences of ``eval_path``; None: all of them."""

    def __post_init__(self) -> None:
        blend = tuple(entry if isinstance(entry, BlendEntry) else self._entry(entry) for entry in self.blend)
        object.__setattr__(self, "blend", blend)
        if not blend:
            raise ValueError("DataConfig.blend is empty; give at least one (packed dataset directory, weight)")
        paths = [os.path.abspath(entry.path) for entry in blend]
        repeated = sorted({path for path in paths if paths.count(path) > 1})
        if repeated:
            raise ValueError(f"DataConfig.blend lists {repeated} more than once; give each dataset once with its total weight")
        for name in ("seq_len", "global_batch_size", "micro_batch_size", "prefetch_factor", "corrupt_check_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DataConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers must be 0 or more, got {self.num_workers!r}")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"DataConfig.global_batch_size={self.global_batch_size} is not a multiple of "
                f"micro_batch_size={self.micro_batch_size}; make it one"
            )
        if not 0.0 <= self.max_corrupt_fraction < 1.0:
            raise ValueError(f"DataConfig.max_corrupt_fraction must be in [0, 1), got {self.max_corrupt_fraction!r}")
        if not isinstance(self.image_settings, ImageSettings):
            raise ValueError("DataConfig.image_settings must be an ImageSettings (megatron_vl.data.images)")
        if self.eval_samples is not None:
            if self.eval_path is None:
                raise ValueError("DataConfig.eval_samples is set but eval_path is not; give the held-out dataset")
            if isinstance(self.eval_samples, bool) or not isinstance(self.eval_samples, int) or self.eval_samples < 1:
                raise ValueError(f"DataConfig.eval_samples must be a positive integer or None, got {self.eval_samples!r}")

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
