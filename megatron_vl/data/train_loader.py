"""The training loader: this data-parallel rank's micro-batches of the global sample stream, resumable.

Global batch b is the next ``global_batch_size`` positions of the stream (``blending.BlendedStream``);
data-parallel rank r of D takes its contiguous r-th part of it, as ``global_batch_size / (D *
micro_batch_size)`` micro-batches. The state is the stream cursor after the last whole step plus
per-dataset read / skipped counts; it is the same on every rank, so a run resumes from it at any
data-parallel size and sees exactly the samples an uninterrupted run would.

A corrupt sample is replaced by the next sample of its dataset in the epoch's shuffled order (up
to ``MAX_REPLACEMENTS`` tries), logged and counted. The replacement depends only on the data, so a resumed
run makes the same one. Past ``max_corrupt_fraction`` of a dataset's reads the run stops.

A dataset may be at a URL (``storage.DatasetFiles``): requests retried after transient errors are logged and counted
per dataset (``retried`` in the state); a request that stays unreadable stops the run with ``RemoteReadError``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Iterator

import torch
import torch.distributed as dist

from megatron_vl.config.data import DataConfig
from megatron_vl.data.batch import VLBatch
from megatron_vl.data.blending import BlendedStream, StreamCursor
from megatron_vl.data.compatibility import open_compatible_dataset
from megatron_vl.data.sample_reader import MicroBatchPlan, MicroBatchReader, MicroBatchResult, SlotPlan, read_in_order

STATE_FORMAT = 1
MAX_REPLACEMENTS = 8
"""Samples tried after a corrupt one before the dataset is declared damaged."""

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadCounts:
    """Samples read from one dataset, how many of them were corrupt, and how many requests for them were retried."""

    read: int = 0
    skipped: int = 0
    retried: int = 0

    def add(self, other: "ReadCounts") -> None:
        self.read += other.read
        self.skipped += other.skipped
        self.retried += other.retried


class TrainLoader:
    """Iterate to get this rank's micro-batches, step after step, forever (datasets reshuffle per epoch)."""

    def __init__(
        self,
        config: DataConfig,
        *,
        tokenizer_fingerprint: str,
        data_parallel_rank: int = 0,
        data_parallel_size: int = 1,
        data_parallel_group: dist.ProcessGroup | None = None,
        tokens_per_second: int = 2,
        document_alignment: int = 1,
    ) -> None:
        """``data_parallel_group`` sums the corrupt-sample counts in ``state_dict``; None means the
        default group, which must then be exactly the data-parallel ranks. ``tokens_per_second`` is the
        model's ``vision.tokens_per_second`` (Qwen2.5-VL's 2 by default): datasets packed for another are refused.
        ``document_alignment`` (2 x CP under context parallelism) pads every document to a multiple of it; datasets
        packed without that room are refused."""
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank={data_parallel_rank} is not in [0, {data_parallel_size})")
        self.config = config
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.data_parallel_group = data_parallel_group
        self.micro_batches_per_step = config.micro_batches_per_step(data_parallel_size)
        self.datasets = [
            open_compatible_dataset(
                entry.path, seq_len=config.seq_len, tokenizer_fingerprint=tokenizer_fingerprint,
                image_settings=config.image_settings, tokens_per_second=tokens_per_second,
                document_alignment=document_alignment,
                retry_seconds=config.remote_retry_seconds,
            )
            for entry in config.blend
        ]
        self._manifest_sha256 = [dataset.manifest_sha256 for dataset in self.datasets]
        self.stream = BlendedStream([len(dataset) for dataset in self.datasets], [e.weight for e in config.blend], config.seed)
        self.reader = MicroBatchReader(self.datasets, config.image_settings, document_alignment)
        self._cursor = self.stream.start()
        self._resumed = [ReadCounts() for _ in self.datasets]  # all ranks' counts up to the loaded state
        self._counts = [ReadCounts() for _ in self.datasets]  # this rank's since then, at whole steps
        self._micro_batches_in_step = 0
        self._iteration = 0
        for dataset, weight in zip(self.datasets, self.stream.weights):
            logger.info(
                "blend: %5.1f%% from %s (%d sequences of %d tokens; one epoch every %d global batches)",
                100 * weight, dataset.directory, len(dataset), config.seq_len,
                math.ceil(len(dataset) / (weight * config.global_batch_size)),
            )

    @property
    def consumed_samples(self) -> int:
        """Stream positions (sequences, over all ranks) consumed by the completed steps."""
        return self._cursor.position

    def __iter__(self) -> Iterator[VLBatch]:
        """Micro-batches from the last completed step on; a new iterator ends the previous one."""
        self._iteration += 1
        iteration = self._iteration
        self._micro_batches_in_step = 0
        step_counts = [ReadCounts() for _ in self.datasets]
        results = read_in_order(
            self.reader, self._plans(self._cursor),
            num_workers=self.config.num_workers, prefetch_factor=self.config.prefetch_factor,
        )
        for result in results:
            if iteration != self._iteration:
                return
            self._account(result, step_counts)
            self._micro_batches_in_step += 1
            if self._micro_batches_in_step == self.micro_batches_per_step:
                for total, counts in zip(self._counts, step_counts):
                    total.add(counts)
                step_counts = [ReadCounts() for _ in self.datasets]
                self._cursor = result.plan.cursor_after
                self._micro_batches_in_step = 0
            yield result.batch

    def _plans(self, cursor: StreamCursor) -> Iterator[MicroBatchPlan]:
        config = self.config
        per_rank = config.global_batch_size // self.data_parallel_size
        first = self.data_parallel_rank * per_rank
        while True:
            picks, after = self.stream.take(cursor, config.global_batch_size)
            mine = picks[first : first + per_rank]
            for start in range(0, per_rank, config.micro_batch_size):
                rows = mine[start : start + config.micro_batch_size]
                yield MicroBatchPlan(tuple(self._slot(dataset, draw) for dataset, draw in rows), after)
            cursor = after

    def _slot(self, dataset: int, draw: int) -> SlotPlan:
        return SlotPlan(dataset, tuple(self.stream.sample_indices(dataset, draw, 1 + MAX_REPLACEMENTS)))

    def _account(self, result: MicroBatchResult, step_counts: list[ReadCounts]) -> None:
        for dataset, reads in result.reads.items():
            step_counts[dataset].read += reads
        for dataset, retried in result.retried.items():
            step_counts[dataset].retried += retried
            logger.warning(
                "%d requests to %s retried after transient errors [%d retried since the run began]",
                retried, self.datasets[dataset].directory, self._totals(dataset, step_counts).retried,
            )
        for skip in result.skipped:
            step_counts[skip.dataset].skipped += 1
            totals = self._totals(skip.dataset, step_counts)
            logger.warning(
                "skipped corrupt packed sample: dataset %s, %s sample %d (sample %d of the dataset): %s "
                "[%d of %d samples read from this dataset skipped]",
                self.datasets[skip.dataset].directory, skip.shard, skip.index_in_shard, skip.sample, skip.reason,
                totals.skipped, totals.read,
            )
        for dataset in result.reads:
            totals = self._totals(dataset, step_counts)
            config = self.config
            if totals.read >= config.corrupt_check_after and totals.skipped > config.max_corrupt_fraction * totals.read:
                directory = self.datasets[dataset].directory
                raise ValueError(
                    f"{totals.skipped} of the {totals.read} samples read from packed dataset {directory} were "
                    f"corrupt ({totals.skipped / totals.read:.2%}), above DataConfig.max_corrupt_fraction="
                    f"{config.max_corrupt_fraction}; run `python -m data_prep verify {directory}` to find the "
                    "damaged shards, re-pack or restore them, then resume from the last checkpoint"
                )

    def _totals(self, dataset: int, step_counts: list[ReadCounts]) -> ReadCounts:
        totals = ReadCounts()
        for counts in (self._resumed, self._counts, step_counts):
            totals.add(counts[dataset])
        return totals

    def state_dict(self) -> dict:
        """Where the stream stands after the last completed step, and the read / corrupt counts of
        all ranks (a collective over the data-parallel group: call it on every rank)."""
        if self._micro_batches_in_step:
            raise ValueError(
                f"TrainLoader.state_dict() is called {self._micro_batches_in_step} micro-batches into a step of "
                f"{self.micro_batches_per_step}; save the loader state after the step's last micro-batch"
            )
        counts = self._all_ranks_counts()
        datasets = []
        for k, dataset in enumerate(self.datasets):
            drawn = self._cursor.drawn[k]
            datasets.append({
                "path": str(dataset.directory),
                "manifest_sha256": self._manifest_sha256[k],
                "num_samples": len(dataset),
                "weight": self.stream.weights[k],
                "drawn": drawn,
                "epoch": drawn // len(dataset),
                "read": self._resumed[k].read + counts[k].read,
                "skipped": self._resumed[k].skipped + counts[k].skipped,
                "retried": self._resumed[k].retried + counts[k].retried,
            })
        return {
            "format": STATE_FORMAT,
            "seed": self.stream.seed,
            "consumed_samples": self._cursor.position,
            "datasets": datasets,
        }

    def _all_ranks_counts(self) -> list[ReadCounts]:
        if self.data_parallel_size == 1:
            return self._counts
        group = self.data_parallel_group
        if not dist.is_initialized() or (group is None and dist.get_world_size() != self.data_parallel_size):
            raise ValueError(
                f"TrainLoader with data_parallel_size={self.data_parallel_size} sums its counts over the ranks in "
                "state_dict(): initialise torch.distributed and pass data_parallel_group (the default group "
                "only serves when every rank is a data-parallel rank)"
            )
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else "cpu"
        values = torch.tensor([[c.read, c.skipped, c.retried] for c in self._counts], dtype=torch.int64, device=device)
        dist.all_reduce(values, group=group)
        return [ReadCounts(*row) for row in values.tolist()]

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from ``state_dict``, at this or another data-parallel size)."""
        fix = "resume with the blend and seed the checkpoint was trained with, or start the stage without its loader state"
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"loader state format {state.get('format')!r} is not {STATE_FORMAT}; {fix}")
        if state["seed"] != self.stream.seed:
            raise ValueError(f"loader state has seed {state['seed']}, DataConfig.seed is {self.stream.seed}; {fix}")
        if len(state["datasets"]) != len(self.datasets):
            raise ValueError(
                f"loader state has {len(state['datasets'])} datasets in its blend, this run {len(self.datasets)}; {fix}"
            )
        for k, (saved, dataset) in enumerate(zip(state["datasets"], self.datasets)):
            if saved["manifest_sha256"] != self._manifest_sha256[k]:
                raise ValueError(
                    f"blend entry {k}: the loader state was made with packed dataset {saved['path']} (manifest "
                    f"sha256 {saved['manifest_sha256'][:12]}...), this run reads {dataset.directory} (manifest "
                    f"sha256 {self._manifest_sha256[k][:12]}...), a different dataset; {fix}"
                )
            if not math.isclose(saved["weight"], self.stream.weights[k], rel_tol=1e-12):
                raise ValueError(
                    f"blend entry {k} ({dataset.directory}): normalised weight {saved['weight']} in the loader "
                    f"state, {self.stream.weights[k]} in this run; {fix}"
                )
        drawn = tuple(int(saved["drawn"]) for saved in state["datasets"])
        if sum(drawn) != state["consumed_samples"] or min(drawn) < 0:
            raise ValueError(
                f"loader state is inconsistent: per-dataset draws {list(drawn)} do not add up to consumed_samples "
                f"{state['consumed_samples']}; the checkpoint is damaged, resume from an earlier one"
            )
        self._cursor = StreamCursor(int(state["consumed_samples"]), drawn)
        # States saved before datasets could be at a URL have no "retried": none were.
        self._resumed = [
            ReadCounts(int(saved["read"]), int(saved["skipped"]), int(saved.get("retried", 0))) for saved in state["datasets"]
        ]
        self._counts = [ReadCounts() for _ in self.datasets]
        self._micro_batches_in_step = 0
        self._iteration += 1
