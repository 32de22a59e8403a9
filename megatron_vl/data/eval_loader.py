"""The evaluation loader: a held-out packed dataset in its stored order, split over data-parallel ranks."""

from __future__ import annotations

import logging
from typing import Iterator

from megatron_vl.config.data import DataConfig
from megatron_vl.data.batch import VLBatch
from megatron_vl.data.compatibility import open_compatible_dataset
from megatron_vl.data.sample_reader import MicroBatchPlan, MicroBatchReader, SlotPlan, read_in_order

logger = logging.getLogger(__name__)


class EvalLoader:
    """The first ``config.eval_samples`` sequences of ``config.eval_path`` (all by default), the same
    every time. Evaluation batch b is sequences [b * D * m, (b + 1) * D * m) for D data-parallel
    ranks and micro-batch size m; rank r takes its r-th micro-batch of it. A remainder that does
    not fill a whole evaluation batch is left out and reported (``num_dropped``).

    A corrupt sample is not replaced (the set must stay fixed): it raises ``ValueError``.
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        tokenizer_fingerprint: str,
        data_parallel_rank: int = 0,
        data_parallel_size: int = 1,
        tokens_per_second: int = 2,
        document_alignment: int = 1,
    ) -> None:
        """``tokens_per_second`` is the model's ``vision.tokens_per_second`` (Qwen2.5-VL's 2 by default): a dataset
        packed for another is refused. ``document_alignment`` (2 x CP under context parallelism) pads every document
        to a multiple of it; a dataset packed without that room is refused."""
        if config.eval_path is None:
            raise ValueError("DataConfig.eval_path is not set; give a held-out packed dataset to evaluate on")
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank={data_parallel_rank} is not in [0, {data_parallel_size})")
        dataset = open_compatible_dataset(
            config.eval_path, seq_len=config.seq_len, tokenizer_fingerprint=tokenizer_fingerprint,
            image_settings=config.image_settings, tokens_per_second=tokens_per_second,
            document_alignment=document_alignment,
            retry_seconds=config.remote_retry_seconds,
        )
        wanted = len(dataset) if config.eval_samples is None else config.eval_samples
        if wanted > len(dataset):
            raise ValueError(
                f"DataConfig.eval_samples={wanted} but {config.eval_path} holds {len(dataset)} sequences; "
                "lower eval_samples or leave it unset to use them all"
            )
        self.config = config
        self.data_parallel_rank = data_parallel_rank
        self.batch_sequences = data_parallel_size * config.micro_batch_size
        self.num_batches = wanted // self.batch_sequences
        if self.num_batches == 0:
            raise ValueError(
                f"evaluation on {wanted} sequences of {config.eval_path} cannot give each of {data_parallel_size} "
                f"data-parallel ranks a micro-batch of {config.micro_batch_size}; use at least {self.batch_sequences}"
            )
        self.num_samples = self.num_batches * self.batch_sequences
        self.num_dropped = wanted - self.num_samples
        if self.num_dropped:
            logger.warning(
                "evaluation uses %d of %d sequences of %s: the last %d do not fill a batch of %d data-parallel "
                "ranks x micro-batch %d",
                self.num_samples, wanted, config.eval_path, self.num_dropped, data_parallel_size,
                config.micro_batch_size,
            )
        self.reader = MicroBatchReader([dataset], config.image_settings, document_alignment)

    def __len__(self) -> int:
        """Micro-batches per rank in one evaluation pass."""
        return self.num_batches

    def _plans(self) -> Iterator[MicroBatchPlan]:
        size = self.config.micro_batch_size
        for batch in range(self.num_batches):
            first = batch * self.batch_sequences + self.data_parallel_rank * size
            yield MicroBatchPlan(tuple(SlotPlan(0, (sample,)) for sample in range(first, first + size)))

    def __iter__(self) -> Iterator[VLBatch]:
        results = read_in_order(
            self.reader, self._plans(), num_workers=self.config.num_workers, prefetch_factor=self.config.prefetch_factor
        )
        for result in results:
            yield result.batch
