"""Turn raw JSONL / webdataset documents into sample shards (one document per sample).

Inputs are JSONL files (one document per line, image paths relative to --image-root, by default
the JSONL's folder) and webdataset tars; directories are searched for both. Inputs may be URLs
(s3://, gs://, http(s)://) or pipe: commands and may hold brace patterns, as webdataset takes them;
a read that fails is retried from the start, then reported (unreadable_shard). Each document's images
are decoded, EXIF-rotated, converted to RGB and resized as Qwen2VLImageProcessor does, then stored
losslessly; grounding and OCR boxes are rewritten in pixels of the resized image. Every bad
document is skipped with a line in the reject log (its file and line, or tar and key, and why);
the summary counts documents per kind and rejects per reason. Output is identical whatever the
number of workers. Videos (files decoded with PyAV, or folders of frames) are sampled and resized as
Qwen2VLVideoProcessor does and their kept frames stored losslessly, one PNG per frame; a video longer
than --video-max-seconds is refused, not cut. The raw schema of each kind is in the README ("Data
preparation").

examples:
  python -m data_prep ingest --input raw/ --out shards/ --workers 8 --near-dup
  python -m data_prep ingest --input 's3://bucket/laion/{000000..000123}.tar' --out shards/ --kind caption
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import time

from data_prep.ingest.image_dedup import ImageDeduplicator
from data_prep.ingest.input_locations import find_inputs, public_location
from data_prep.ingest.input_streams import RetrySettings
from data_prep.ingest.raw_sources import count_documents, iter_items
from data_prep.ingest.rejects import Reject, RejectLog, RejectReason
from data_prep.ingest.sample_builder import BuildSettings, init_worker, process_item
from data_prep.parallel_map import ordered_map
from data_prep.partitions import Partition, finished, mark_finished
from data_prep.sample_shards.manifest import (
    IMAGE_HASHES_NAME, MANIFEST_NAME, SHARD_PATTERN, DedupSettings, IngestManifest, InputDocuments,
)
from data_prep.sample_shards.sample_meta import KINDS, sample_key, sample_members
from data_prep.sample_shards.writer import SampleShardWriter, ShardLimit
from megatron_vl.config.validation import positive_int
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.videos import VideoSettings
from megatron_vl.files import write_atomically
from megatron_vl.progress import ProgressBar

DEFAULT_DEDUP_KINDS = "caption,ocr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults, retry = ImageSettings(), RetrySettings()
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="JSONL files (*.jsonl, *.jsonl.gz), webdataset tars (*.tar), or directories of them; "
                             "URLs (s3://, gs://, http(s)://) and pipe: commands; brace patterns "
                             "(shards/{000000..000123}.tar) are expanded")
    parser.add_argument("--out", required=True, help="output directory for samples-*.tar and ingest_manifest.json")
    parser.add_argument("--kind", choices=KINDS, help="kind of records that have no 'kind' field")
    parser.add_argument("--image-root", help="directory image paths of JSONL records start from (default: the JSONL's directory)")
    parser.add_argument("--shard-size", default="1GB", type=_shard_limit,
                        help="samples per shard (e.g. 10000) or bytes per shard (e.g. 512MB, 1GiB); default 1GB")
    parser.add_argument("--min-pixels", type=int, default=defaults.min_pixels,
                        help=f"smallest resized image area (default {defaults.min_pixels})")
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels,
                        help=f"largest resized image area (default {defaults.max_pixels})")
    video = VideoSettings()
    parser.add_argument("--video-fps", type=float, default=video.fps,
                        help=f"frames sampled per second of a video file (default {video.fps:g})")
    parser.add_argument("--video-min-frames", type=int, default=video.min_frames,
                        help=f"fewest frames sampled from a video file (default {video.min_frames})")
    parser.add_argument("--video-max-frames", type=int, default=video.max_frames,
                        help=f"most frames sampled from a video file, and most frames of a frame folder "
                             f"(default {video.max_frames})")
    parser.add_argument("--video-min-pixels", type=int, default=video.min_pixels,
                        help=f"smallest resized frame area (default {video.min_pixels})")
    parser.add_argument("--video-max-pixels", type=int, default=video.max_pixels,
                        help=f"largest resized frame area (default {video.max_pixels})")
    parser.add_argument("--video-max-tokens", type=int, default=video.max_video_tokens,
                        help="merged-token budget of one video, shared by its frames "
                             f"(default {video.max_video_tokens})")
    parser.add_argument("--video-max-seconds", type=float, default=video.max_seconds,
                        help=f"longer videos are refused (video_too_long), not cut (default {video.max_seconds:g})")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: all CPUs)")
    parser.add_argument("--dedup-kinds", default=DEFAULT_DEDUP_KINDS,
                        help="comma-separated kinds whose documents are dropped when all their images were already "
                             f"ingested (default {DEFAULT_DEDUP_KINDS}: grounding and cot reuse images on purpose); "
                             "'' turns dedup off")
    parser.add_argument("--near-dup", nargs="?", type=int, const=4, default=None, metavar="DISTANCE",
                        help="also drop near-duplicate images: perceptual hashes within DISTANCE bits (default 4)")
    parser.add_argument("--reject-log", help="JSONL file of rejected documents (default: OUT/rejects.jsonl)")
    parser.add_argument("--png-compression", type=int, default=1, choices=range(10), metavar="0-9",
                        help="zlib level of the stored PNGs (default 1: fast, images are stored once)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing ingest output in --out")
    parser.add_argument("--partition", type=Partition.parse, metavar="I/N",
                        help="ingest only partition I of N of the sorted inputs, into OUT/partition-IIIII-of-NNNNN/ "
                             "(skipped when finished; duplicates across partitions are dropped by dedup-plan and "
                             "dedup-apply)")
    parser.add_argument("--read-attempts", type=int, default=retry.attempts,
                        help=f"reads of an input before it is reported unreadable (default {retry.attempts})")
    parser.add_argument("--retry-backoff", type=float, default=retry.backoff_s, metavar="SECONDS",
                        help=f"wait before the first retry, doubled before each further one (default {retry.backoff_s})")


def _shard_limit(text: str) -> ShardLimit:
    try:
        return ShardLimit.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _dedup_kinds(text: str) -> list[str]:
    kinds = [kind for kind in text.split(",") if kind]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"--dedup-kinds names unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    return kinds


def _prepare_output(directory: str, overwrite: bool) -> None:
    os.makedirs(directory, exist_ok=True)
    old = [name for name in os.listdir(directory) if SHARD_PATTERN.fullmatch(name) or name == MANIFEST_NAME]
    if old and not overwrite:
        raise ValueError(f"{directory} already holds an ingest output ({len(old)} files); pass --overwrite or another --out")
    for name in old:
        os.remove(os.path.join(directory, name))


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    image_settings = ImageSettings(min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    video_settings = VideoSettings(
        fps=args.video_fps, min_frames=args.video_min_frames, max_frames=args.video_max_frames,
        min_pixels=args.video_min_pixels, max_pixels=args.video_max_pixels,
        max_video_tokens=args.video_max_tokens, max_seconds=args.video_max_seconds,
    )
    settings = BuildSettings(
        image_settings=image_settings,
        video_settings=video_settings,
        default_kind=args.kind,
        png_compression=args.png_compression,
        perceptual_hashes=args.near_dup is not None,
    )
    positive_int("ingest", "workers", args.workers)
    dedup_kinds = _dedup_kinds(args.dedup_kinds)
    retry = RetrySettings(attempts=args.read_attempts, backoff_s=args.retry_backoff)
    inputs = find_inputs(args.input)
    out, partition = args.out, args.partition
    if partition is not None:
        if args.reject_log:
            raise ValueError("--reject-log cannot be given with --partition: each partition logs into its own folder")
        inputs = partition.select(inputs)
        out = os.path.join(args.out, partition.folder)
        identity = {"partition": str(partition), "inputs": [public_location(location) for location in inputs],
                    "settings": _settings_of(args)}
        if finished(out, identity):
            print(f"{out} is finished already (partition {partition}); nothing to do")
            return 0
    _prepare_output(out, args.overwrite)
    reject_path = args.reject_log or os.path.join(out, "rejects.jsonl")
    counts = [count_documents(path) for path in inputs]
    total = None if None in counts else sum(counts)

    deduplicator = ImageDeduplicator(args.near_dup)
    writer = SampleShardWriter(out, args.shard_size)
    kinds: collections.Counter[str] = collections.Counter()
    per_input: collections.Counter[str] = collections.Counter()
    unreadable: dict[str, str] = {}
    num_images = num_videos = 0
    items = (item for location in inputs for item in iter_items(location, args.image_root, retry))
    # Within a partition nothing is dropped as a duplicate yet: every deduplicable sample's image hashes
    # are written, and dedup-plan replays them in the global input order, as one process would.
    hashes_file = open(os.path.join(out, IMAGE_HASHES_NAME), "w", encoding="utf-8") if partition is not None else None
    with open(reject_path, "w", encoding="utf-8") as reject_file, ProgressBar(total=total, unit="document", desc="ingest") as bar:
        rejects = RejectLog(reject_file)
        outcomes = ordered_map(
            process_item, items, workers=args.workers, initializer=init_worker, initargs=(settings,)
        )
        for outcome in outcomes:
            source = outcome.source if isinstance(outcome, Reject) else outcome.meta.source
            location = source.get("file") or source.get("tar")
            if isinstance(outcome, Reject) and outcome.reason == RejectReason.UNREADABLE_SHARD:
                unreadable[location] = outcome.detail
                rejects.add(outcome)
                continue
            bar.update()
            ordinal = per_input[location]
            per_input[location] += 1
            key = sample_key(sum(kinds.values()))
            if hashes_file is not None and not isinstance(outcome, Reject) and outcome.meta.kind in dedup_kinds:
                hashes_file.write(json.dumps({"key": key, "input": location, "ordinal": ordinal,
                                              "sha256s": outcome.sha256s, "phashes": outcome.phashes}) + "\n")
            elif not isinstance(outcome, Reject) and outcome.meta.kind in dedup_kinds:
                duplicate = deduplicator.find(outcome.sha256s, outcome.phashes)
                if duplicate is not None:
                    match, earlier = duplicate
                    reason = RejectReason.DUPLICATE_IMAGE if match == "exact" else RejectReason.NEAR_DUPLICATE_IMAGE
                    outcome = Reject(source=source, reason=reason,
                                     detail=f"its images are {match} duplicates of those of sample {earlier}")
                else:
                    deduplicator.add(key, outcome.sha256s, outcome.phashes)
            if isinstance(outcome, Reject):
                rejects.add(outcome)
            else:
                writer.write(key, sample_members(outcome.meta, outcome.pngs, outcome.video_pngs))
                kinds[outcome.meta.kind] += 1
                num_images += len(outcome.pngs)
                num_videos += len(outcome.video_pngs)
            if bar.count % 256 == 0:
                bar.set_postfix(accepted=sum(kinds.values()), rejected=sum(rejects.counts.values()))
        bar.set_postfix(accepted=sum(kinds.values()), rejected=sum(rejects.counts.values()))
    shards = writer.close()
    if hashes_file is not None:
        hashes_file.close()

    manifest = IngestManifest(
        num_samples=sum(kinds.values()),
        num_images=num_images,
        kinds={kind: kinds[kind] for kind in KINDS if kinds[kind]},
        image_settings=image_settings,
        video_settings=video_settings,
        shards=shards,
        rejects=dict(sorted(rejects.counts.items())),
        num_rejected=sum(rejects.counts.values()),
        inputs=[
            InputDocuments(path=location, documents=per_input[location], unreadable=unreadable.get(location))
            for location in map(public_location, inputs)
        ],
        dedup=DedupSettings(kinds=dedup_kinds, near_dup_distance=args.near_dup,
                            pending=partition is not None and bool(dedup_kinds)),
        png_compression=args.png_compression,
        arguments=_arguments(args),
    )
    write_atomically(os.path.join(out, MANIFEST_NAME), manifest.to_json().encode())
    if partition is not None:
        mark_finished(out, identity)
    _print_summary(manifest, num_videos, reject_path, time.perf_counter() - started)
    return 0


def _arguments(args: argparse.Namespace) -> dict:
    """The command line as parsed (every option, defaults included), for the manifest."""
    values = {name: value for name, value in vars(args).items() if name not in ("run", "subcommand")}
    values["shard_size"] = dataclasses.asdict(args.shard_size)
    values["partition"] = None if args.partition is None else str(args.partition)
    values["input"] = [public_location(argument) for argument in args.input]
    return values


def _settings_of(args: argparse.Namespace) -> dict:
    """The options that decide a partition's output (not --workers: the output does not depend on it)."""
    arguments = _arguments(args)
    return {name: value for name, value in arguments.items() if name not in ("workers", "overwrite", "partition")}


def _print_summary(manifest: IngestManifest, num_videos: int, reject_path: str, seconds: float) -> None:
    unreadable = [entry for entry in manifest.inputs if entry.unreadable is not None]
    documents = manifest.num_samples + manifest.num_rejected - len(unreadable)
    total_bytes = sum(shard.bytes for shard in manifest.shards)
    print(f"\ningested {manifest.num_samples} of {documents} documents ({manifest.num_images} images, "
          f"{num_videos} videos) into "
          f"{len(manifest.shards)} shards, {total_bytes / 1e6:.1f} MB, in {seconds:.1f}s "
          f"({documents / max(seconds, 1e-9):.0f} documents/s)")
    print(f"  {'kind':<22}{'samples':>9}")
    for kind, count in manifest.kinds.items():
        print(f"  {kind:<22}{count:>9}")
    if manifest.rejects:
        print(f"  {'rejected: reason':<22}{'count':>9}   (details: {reject_path})")
        for reason, count in manifest.rejects.items():
            print(f"  {reason:<22}{count:>9}")
    else:
        print("  no document was rejected")
    if unreadable:
        print(f"  {len(unreadable)} of {len(manifest.inputs)} inputs could not be read to their end "
              f"(unreadable_shard; their documents after the failure are missing):")
        for entry in unreadable:
            print(f"    {entry.path}: {entry.unreadable}")
