"""Reading planned micro-batches from packed datasets: fetch, check, decode images and video frames into patches, stack.

A ``MicroBatchPlan`` names, for every row, the sample to read and the samples that replace it if
it is corrupt (for training: the ones after it in its dataset's shuffled epoch order). ``MicroBatchReader`` is a
map-style torch ``Dataset`` indexed by plans, so a ``DataLoader`` with any number of worker
processes returns the micro-batches in plan order: the worker count never changes the batches.

A dataset at a URL is read by each worker process through its own filesystem (``storage.DatasetFiles``); the requests
it retried after transient errors come back with the result, so the loader counts them whichever process read.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Iterable, Iterator

import numpy as np
import torch

from megatron_vl.data.batch import VLBatch, build_batch
from megatron_vl.data.blending import StreamCursor
from megatron_vl.data.images import ImageSettings, load_image, patchify
from megatron_vl.data.packed_format import PackedDataset, PackedSample
from megatron_vl.data.sample_checks import SampleContract, check_packed_sample
from megatron_vl.data.videos import patchify_video

# What a damaged sample raises while it is read and decoded (PIL raises SyntaxError for broken PNG chunks).
READ_ERRORS = (ValueError, OSError, SyntaxError, EOFError, zlib.error)


@dataclasses.dataclass(frozen=True)
class SlotPlan:
    """One row of a micro-batch: ``candidates[0]`` of ``dataset``, or the next candidate if it is corrupt."""

    dataset: int
    candidates: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class MicroBatchPlan:
    """The rows of one micro-batch, and the stream cursor after the step it belongs to (training only)."""

    slots: tuple[SlotPlan, ...]
    cursor_after: StreamCursor | None = None


@dataclasses.dataclass(frozen=True)
class SkippedSample:
    """A corrupt sample that was not used."""

    dataset: int
    sample: int
    shard: str
    index_in_shard: int
    reason: str


@dataclasses.dataclass
class MicroBatchResult:
    """What a worker hands back: the batch, what it skipped, how many samples it read and how many requests it
    retried (after transient storage errors) per dataset."""

    batch: VLBatch
    skipped: list[SkippedSample]
    reads: dict[int, int]
    plan: MicroBatchPlan
    retried: dict[int, int] = dataclasses.field(default_factory=dict)


class MicroBatchReader(torch.utils.data.Dataset):
    """Turns a ``MicroBatchPlan`` into a ``MicroBatchResult``; runs inside DataLoader workers."""

    def __init__(self, datasets: list[PackedDataset], image_settings: ImageSettings, document_alignment: int = 1) -> None:
        """``document_alignment``: pad every document of a micro-batch to a multiple of it (2 x CP under context
        parallelism; the datasets' manifests must have reserved the room)."""
        self.datasets = datasets
        self.image_settings = image_settings
        self.document_alignment = document_alignment
        self._contracts = [SampleContract.of_manifest(dataset.manifest) for dataset in datasets]

    def read(self, dataset: int, sample: int) -> tuple[PackedSample, list[np.ndarray], list[np.ndarray]]:
        """The sample and the patches of each of its images and of each of its videos; ``ValueError`` saying what is
        wrong with a damaged one (the packed-sample contract, as ``data_prep verify --deep`` checks it, then the
        decoded images and frames)."""
        shard, index = self.datasets[dataset].locate(sample)
        packed = self.datasets[dataset].read(shard, index)
        problems = check_packed_sample(packed, self._contracts[dataset])
        if problems:
            raise ValueError("; ".join(problems))
        patches = []
        for k, (png, grid) in enumerate(zip(packed.images, packed.image_grid_thw)):
            image_patches, decoded_grid = patchify(np.asarray(load_image(png)), self.image_settings)
            if decoded_grid != tuple(grid):
                raise ValueError(f"image {k} decodes to grid {decoded_grid}, its record says {tuple(grid)}")
            patches.append(image_patches)
        video_patches = []
        for k, (frames, grid) in enumerate(zip(packed.videos, packed.video_grid_thw)):
            pixels = np.stack([np.asarray(load_image(png)) for png in frames])
            # Stored frames are resized already: cutting them needs only the patch geometry images share.
            patches_of_video, decoded_grid = patchify_video(pixels, self.image_settings)
            if decoded_grid != tuple(grid):
                raise ValueError(f"video {k} decodes to grid {decoded_grid}, its record says {tuple(grid)}")
            video_patches.append(patches_of_video)
        return packed, patches, video_patches

    def __getitem__(self, plan: MicroBatchPlan) -> MicroBatchResult:
        samples, patches, video_patches, ids, skipped, reads = [], [], [], [], [], {}
        retries_before = [dataset.files.retries for dataset in self.datasets]
        for slot in plan.slots:
            for sample in slot.candidates:
                reads[slot.dataset] = reads.get(slot.dataset, 0) + 1
                try:
                    packed, sample_patches, sample_video_patches = self.read(slot.dataset, sample)
                except READ_ERRORS as error:
                    shard, index = self.datasets[slot.dataset].locate(sample)
                    name = self.datasets[slot.dataset].manifest.shards[shard].name
                    skipped.append(SkippedSample(slot.dataset, sample, name, index, f"{type(error).__name__}: {error}"))
                    continue
                samples.append(packed)
                patches.extend(sample_patches)
                video_patches.extend(sample_video_patches)
                ids.append((slot.dataset, sample))
                break
            else:
                directory = self.datasets[slot.dataset].directory
                tried = ", ".join(f"{s.shard} sample {s.index_in_shard}" for s in skipped[-len(slot.candidates):])
                raise ValueError(
                    f"packed dataset {directory}: no readable sample among {tried} ({skipped[-1].reason}); the "
                    f"dataset is damaged: run `python -m data_prep verify {directory}` and re-pack or restore "
                    "the shards it reports"
                )
        retried = {
            k: dataset.files.retries - before
            for k, (dataset, before) in enumerate(zip(self.datasets, retries_before))
            if dataset.files.retries != before
        }
        batch = build_batch(samples, patches, ids, self.image_settings.patch_dim, video_patches, self.document_alignment)
        return MicroBatchResult(batch, skipped, reads, plan, retried)


def _as_is(result: MicroBatchResult) -> MicroBatchResult:
    return result


def read_in_order(
    reader: MicroBatchReader, plans: Iterable[MicroBatchPlan], *, num_workers: int, prefetch_factor: int
) -> Iterator[MicroBatchResult]:
    """Results of ``plans`` in plan order, read by ``num_workers`` processes (0: in this one)."""
    return iter(torch.utils.data.DataLoader(
        reader,
        batch_size=None,
        sampler=plans,
        collate_fn=_as_is,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
    ))
