"""The parallel layout of a run: how the world is split into TP x CP x DP x PP, and how the pipeline is cut."""

from __future__ import annotations

import dataclasses
import math

from megatron_vl.config.validation import one_of, positive_int

CONTEXT_PARALLEL_COMMS = ("p2p", "a2a", "all_gather")
"""Transformer Engine's ways of exchanging keys and values under context parallelism (its ``cp_comm_type``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParallelConfig:
    """How ranks are grouped. Data parallelism takes whatever the other dimensions leave."""

    tensor_parallel: int = 1
    """Ranks that split each weight matrix (megatron's TP), in both the ViT and the LLM."""
    pipeline_parallel: int = 1
    """Pipeline stages over the LLM layers; the ViT and projector live on the first stage."""
    context_parallel: int = 1
    """Ranks that split every micro-batch of the LLM (megatron's CP, load-balanced per document: each document in
    2 x CP chunks, rank r holding chunks r and 2 x CP - 1 - r); the micro-batch's images and videos are shared among
    them by ViT FLOPs. Documents are padded to a multiple of 2 x CP, so the datasets must be packed with room for it
    (``pack --document-alignment``, a multiple of 2 x CP)."""
    context_parallel_comm: str = "p2p"
    """How Transformer Engine's CP attention exchanges keys and values: ``p2p`` (a ring, overlapped with compute),
    ``a2a`` (all-to-all over heads: the heads per TP rank must divide by CP) or ``all_gather`` (TE 2.18+ with packed
    sequences). The local layers always all-gather."""
    sequence_parallel: bool = False
    """Shard activations outside attention/MLP along the sequence over the TP group (needs TP > 1)."""
    first_pipeline_stage_language_layers: int | None = None
    """With PP > 1: LLM layers on the first stage, which also holds the ViT and projector (None: an even split)."""

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "context_parallel"):
            positive_int("ParallelConfig", name, getattr(self, name))
        if not isinstance(self.sequence_parallel, bool):
            raise ValueError(f"ParallelConfig.sequence_parallel must be true or false, got {self.sequence_parallel!r}")
        one_of("ParallelConfig", "context_parallel_comm", self.context_parallel_comm, CONTEXT_PARALLEL_COMMS)
        if self.sequence_parallel and self.tensor_parallel == 1:
            raise ValueError(
                "ParallelConfig.sequence_parallel needs tensor_parallel > 1 (it shards over the TP group); "
                "set sequence_parallel=False or raise tensor_parallel"
            )
        positive_int("ParallelConfig", "first_pipeline_stage_language_layers", self.first_pipeline_stage_language_layers,
                     optional=True)
        if self.first_pipeline_stage_language_layers is not None and self.pipeline_parallel == 1:
            raise ValueError(
                "ParallelConfig.first_pipeline_stage_language_layers is set but pipeline_parallel is 1; "
                "unset it or raise pipeline_parallel"
            )

    @property
    def document_alignment(self) -> int:
        """Every document is padded to a multiple of this: 2 x CP under context parallelism, else 1."""
        return 2 * self.context_parallel if self.context_parallel > 1 else 1

    @property
    def sequence_multiple(self) -> int:
        """A packed sequence's length must be a multiple of this: 2 x CP for the split (each row's padding tail is a
        segment too), and CP x TP with sequence parallelism, which splits a rank's tokens over TP."""
        sequence_split = self.tensor_parallel if self.sequence_parallel else 1
        return math.lcm(self.document_alignment, self.context_parallel * sequence_split)

    @property
    def model_parallel_size(self) -> int:
        """Ranks that together hold one copy of the model."""
        return self.tensor_parallel * self.pipeline_parallel * self.context_parallel

    def data_parallel_size(self, world_size: int) -> int:
        """Number of model replicas in a world of ``world_size`` ranks."""
        if world_size % self.model_parallel_size:
            raise ValueError(
                f"world size {world_size} is not divisible by TP x PP x CP = {self.tensor_parallel} x "
                f"{self.pipeline_parallel} x {self.context_parallel} = {self.model_parallel_size}; "
                "change the number of ranks or the parallel layout"
            )
        return world_size // self.model_parallel_size
