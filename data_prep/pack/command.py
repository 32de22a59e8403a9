"""Pack sample shards into training shards of packed sequences of exactly --seq-len tokens.

Every document of the inputs (one or more ingest outputs, concatenated) is tokenized: its text,
its images as <|vision_start|> + one <|image_pad|> per merged vision token + <|vision_end|>
(counted from the stored image size, never decoded), its videos likewise with one <|video_pad|> per
merged vision token of each temporal patch of frames, <|endoftext|> at the end. Documents are
shuffled with --seed, sorted by length within windows of --window documents and packed best-fit
into sequences, padded to --seq-len. With --document-alignment A each document takes its length
rounded up to a multiple of A when rows are planned, so that training under context parallelism over
CP ranks (A a multiple of 2 x CP) can pad every document and the row still holds --seq-len tokens; the
reserved room is padding in the stored rows and counts as padding in the utilisation. Each packed sample holds tokens, labels, loss mask, M-RoPE
positions (per document, as transformers' get_rope_index; a video's temporal positions count
--tokens-per-second per second), document lengths, the images' and video frames' PNG bytes and
every document's provenance; manifest.json records checksums and token counts.

Documents longer than --seq-len: with --long-doc split (default) they are cut into parts at token
boundaries, never inside an image or a video; a document with an image or a video longer than
--seq-len by itself is dropped and counted. With --long-doc drop, every such document is dropped and counted. With a
tokenizer that lacks <think> / </think> (Qwen2.5-VL's own), the documents that use them (chains of
thought) are dropped and counted as tokenizer_lacks_special_token.

The same inputs and options give byte-identical output whatever --workers is. Finished shards
are never lost: after a crash or Ctrl-C, rerun the same command and it continues where it
stopped (it refuses to continue a pack made with other options).

example:
  python -m data_prep pack --input shards/caption shards/ocr --tokenizer tok.json --out packed/8k
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from data_prep.pack.document_tokens import LACKING_SPECIAL_TOKEN_FIX, TOKENIZER_LACKS_SPECIAL_TOKEN
from data_prep.pack.packed_shard_writer import save_manifest
from data_prep.pack.plan_sequences import plan_sequences
from data_prep.pack.resume import PackIdentity, PackInput, already_packed, prepare_work_dir
from data_prep.pack.statistics import histogram_edges, print_summary
from data_prep.pack.tokenize_shards import TokenizeSettings, TokenizeTask, tokenize_shard
from data_prep.pack.tokenize_shards import init_worker as init_tokenize_worker
from data_prep.pack.tokenized_shard import TokenizedDocument, TokenizedShard, load_tokenized_shard, tokenized_shard_done
from data_prep.pack.write_packed_shards import (
    ShardRecord, TokenizedShardSource, WriteSettings, WriteTask, read_record, write_packed_shard,
)
from data_prep.pack.write_packed_shards import init_worker as init_write_worker
from data_prep.parallel_map import ordered_map
from data_prep.partitions import Partition, finished, mark_empty, mark_finished
from data_prep.sample_shards.manifest import MANIFEST_NAME as INGEST_MANIFEST_NAME
from data_prep.sample_shards.manifest import IngestManifest, load_manifest
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import index_name
from megatron_vl.data.packed_manifest import (
    LONG_DOC_POLICIES, KindStats, LengthHistogram, PackedManifest, PackSettings, PackSource, ShardEntry,
)
from megatron_vl.config.validation import one_of, positive_int
from megatron_vl.files import sha256_file
from megatron_vl.progress import ProgressBar
from megatron_vl.tokenizer import OPTIONAL_SPECIAL_TOKENS, Tokenizer, load_tokenizer


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackOptions:
    """Everything ``pack`` needs; all but ``workers`` decide the output bytes."""

    inputs: list[str]
    """Sample-shard directories (ingest outputs), concatenated in this order."""
    tokenizer: str
    """Tokenizer file (tokenizer.json / .model) or its directory."""
    out: str
    """Output directory of the packed dataset."""
    seq_len: int = 8192
    """Tokens per packed sequence (8192 for stages 1-3, 32768 for stage 4)."""
    seed: int = 0
    """Seed of the document shuffle and of the order of the packed sequences."""
    window: int = 10000
    """Documents sorted and packed together; larger packs tighter, smaller mixes the data more."""
    shard_size: int = 256
    """Packed sequences per shard."""
    long_doc: str = "split"
    """Policy for documents longer than seq_len: ``split`` or ``drop`` (see the module docstring)."""
    tokens_per_second: int = 2
    """Temporal M-RoPE positions per second of video: the model's ``vision.tokens_per_second`` (Qwen2.5-VL: 2)."""
    document_alignment: int = 1
    """Room of each document rounded up to a multiple of this when rows are planned: context parallelism over CP
    ranks needs a multiple of 2 x CP (e.g. 16 serves CP up to 8); 1 reserves nothing."""
    workers: int = 1
    """Worker processes; the output does not depend on it."""
    partition: Partition | None = None
    """Set for ``--partition I/N``: shards are numbered I, I + N, I + 2N, ... so that the partitions' shard
    names and sample keys never collide and ``merge`` can link them unchanged."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("pack needs at least one --input directory")
        for name in ("seq_len", "window", "shard_size", "workers", "tokens_per_second", "document_alignment"):
            positive_int("PackOptions", name, getattr(self, name))
        one_of("PackOptions", "long_doc", self.long_doc, LONG_DOC_POLICIES)
        if self.seq_len % self.document_alignment:
            raise ValueError(
                f"--document-alignment {self.document_alignment} does not divide --seq-len {self.seq_len}: a document "
                "as long as a row could not be padded; choose an alignment that divides the sequence length"
            )

    @property
    def settings(self) -> PackSettings:
        return PackSettings(seed=self.seed, window=self.window, shard_size=self.shard_size, long_doc=self.long_doc,
                            tokens_per_second=self.tokens_per_second, document_alignment=self.document_alignment)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(PackOptions)}
    parser.add_argument("--input", nargs="+", required=True, metavar="DIR",
                        help="sample-shard directories written by `data_prep ingest` (concatenated)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json, sentencepiece .model, or their directory")
    parser.add_argument("--out", required=True, help="output directory for packed-*.tar and manifest.json")
    parser.add_argument("--seq-len", type=int, default=defaults["seq_len"],
                        help=f"tokens per packed sequence (default {defaults['seq_len']}; 32768 for stage 4)")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="shuffle seed (default 0)")
    parser.add_argument("--window", type=int, default=defaults["window"],
                        help=f"documents sorted and packed best-fit together (default {defaults['window']})")
    parser.add_argument("--shard-size", type=int, default=defaults["shard_size"],
                        help=f"packed sequences per shard (default {defaults['shard_size']})")
    parser.add_argument("--long-doc", choices=LONG_DOC_POLICIES, default=defaults["long_doc"],
                        help="documents longer than --seq-len: split them at token boundaries outside images, "
                             "or drop them (default split; either way they are counted)")
    parser.add_argument("--tokens-per-second", type=int, default=defaults["tokens_per_second"],
                        help="temporal M-RoPE positions per second of video: the model's vision.tokens_per_second "
                             f"(default {defaults['tokens_per_second']}, Qwen2.5-VL's; training refuses a dataset "
                             "packed with another)")
    parser.add_argument("--document-alignment", type=int, default=defaults["document_alignment"], metavar="A",
                        help="plan each document's room rounded up to a multiple of A tokens, the padding context "
                             "parallelism needs (A a multiple of 2 x CP; 16 serves CP up to 8; default 1: none)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: all CPUs)")
    parser.add_argument("--partition", type=Partition.parse, metavar="I/N",
                        help="pack partition I of N: reads INPUT/partition-IIIII-of-NNNNN/ of each --input, writes "
                             "OUT/partition-IIIII-of-NNNNN/ (skipped when finished); `merge` joins the partitions")


def run(args: argparse.Namespace) -> int:
    inputs, out, partition = args.input, args.out, args.partition
    if partition is not None:
        inputs = [os.path.join(directory, partition.folder) for directory in args.input]
        out = os.path.join(args.out, partition.folder)
        identity = {
            "partition": str(partition), "inputs": [os.path.abspath(path) for path in inputs],
            "settings": {"tokenizer": os.path.abspath(args.tokenizer), "seq_len": args.seq_len, "seed": args.seed,
                         "window": args.window, "shard_size": args.shard_size, "long_doc": args.long_doc,
                         "tokens_per_second": args.tokens_per_second},
        }
        if args.document_alignment != 1:  # partitions finished before the option existed keep their identity
            identity["settings"]["document_alignment"] = args.document_alignment
        if finished(out, identity):
            print(f"{out} is finished already (partition {partition}); nothing to do")
            return 0
    options = PackOptions(
        inputs=inputs, tokenizer=args.tokenizer, out=out, seq_len=args.seq_len, seed=args.seed,
        window=args.window, shard_size=args.shard_size, long_doc=args.long_doc, workers=args.workers,
        partition=partition, tokens_per_second=args.tokens_per_second, document_alignment=args.document_alignment,
    )
    started = time.monotonic()
    try:
        manifest = pack(options)
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept; run the same command again to continue", file=sys.stderr)
        return 130
    if manifest is not None:
        seconds = time.monotonic() - started
        samples = sum(source.samples for source in manifest.sources)
        print(f"\npacked {samples} samples in {seconds:.1f}s ({samples / max(seconds, 1e-9):.0f} samples/s, "
              f"workers: {options.workers})")
        print_summary(manifest, options.out)
    if partition is not None:
        mark_finished(out, identity)
    return 0


def pack(options: PackOptions, *, progress: bool = True) -> PackedManifest | None:
    """Pack, continuing an interrupted run in ``options.out``; returns None if it was already done."""
    tokenizer = load_tokenizer(options.tokenizer)
    lacking = [token for token in OPTIONAL_SPECIAL_TOKENS if token not in tokenizer.special_ids]
    if lacking:
        print(f"tokenizer {options.tokenizer} lacks {', '.join(lacking)}: documents that use them are dropped "
              f"and counted ({LACKING_SPECIAL_TOKEN_FIX} to keep them)", file=sys.stderr)
    inputs, manifests, image_settings = _read_inputs(options.inputs)
    identity = PackIdentity(
        seq_len=options.seq_len, tokenizer_fingerprint=tokenizer.fingerprint, pack_settings=options.settings,
        sources=inputs,
    )
    out = Path(options.out)
    if already_packed(out, identity):
        print(f"{out} already holds this pack (manifest.json matches the options); nothing to do")
        return None
    work = prepare_work_dir(out, identity)

    prefixes, tokenized = _tokenize(options, inputs, manifests, image_settings, work, progress)
    documents = [(number, document) for number, shard in enumerate(tokenized) for document in shard.documents]
    alignment = options.document_alignment
    lengths = np.array([-(-document.length // alignment) * alignment for _, document in documents], dtype=np.int64)
    sequences = plan_sequences(lengths, seq_len=options.seq_len, seed=options.seed, window=options.window)
    if not sequences:
        dropped = Counter()
        for shard in tokenized:
            dropped.update(shard.dropped)
        if options.partition is not None:
            # One partition may legitimately hold nothing (all its documents were duplicates of other
            # partitions', or its inputs had none): merge skips it and counts it.
            shutil.rmtree(work)
            mark_empty(out, dict(sorted(dropped.items())))
            print(f"{out}: no document is left to pack (dropped: {dict(sorted(dropped.items()))}); recorded as an "
                  "empty partition, which merge skips and counts")
            return None
        raise ValueError(
            f"no document of {options.inputs} is left to pack: all were dropped ({dict(sorted(dropped.items()))}); "
            f"a longer --seq-len or --long-doc split keeps long ones; for {TOKENIZER_LACKS_SPECIAL_TOKEN}: "
            f"{LACKING_SPECIAL_TOKEN_FIX}"
        )

    edges = histogram_edges(options.seq_len)
    write_settings = WriteSettings(
        out_dir=str(out), record_dir=str(work / "shards"), seq_len=options.seq_len,
        tokenized_shards=[
            TokenizedShardSource(prefix=prefix, input=shard.input, shard=shard.shard, shard_path=shard.shard_path)
            for prefix, shard in zip(prefixes, tokenized)
        ],
        pad_id=tokenizer.pad_id, image_pad_id=tokenizer.image_pad_id, video_pad_id=tokenizer.video_pad_id,
        vision_start_id=tokenizer.vision_start_id, patch_size=image_settings.patch_size,
        merge_size=image_settings.merge_size, tokens_per_second=options.tokens_per_second, histogram_edges=edges,
        first_shard_number=0 if options.partition is None else options.partition.index,
        shard_number_step=1 if options.partition is None else options.partition.count,
    )
    records = _write_shards(options, sequences, documents, write_settings, progress)
    manifest = _manifest(identity, tokenizer, image_settings, inputs, tokenized, records, edges)
    save_manifest(manifest, out)
    shutil.rmtree(work)
    return manifest


def _read_inputs(directories: list[str]) -> tuple[list[PackInput], list[IngestManifest], ImageSettings]:
    inputs, manifests = [], []
    for directory in directories:
        manifest = load_manifest(directory)
        if manifest.dedup.pending:
            raise ValueError(
                f"{directory} is a partition whose duplicates across partitions are not dropped yet: run "
                "`python -m data_prep dedup-plan`, then `dedup-apply` for each partition, and pack its output "
                "(or ingest with --dedup-kinds '' to not deduplicate)"
            )
        if manifests and manifest.image_settings != manifests[0].image_settings:
            raise ValueError(
                f"{directory} was ingested with image settings {manifest.image_settings.to_dict()} but "
                f"{directories[0]} with {manifests[0].image_settings.to_dict()}; pack inputs need the same "
                "settings: re-ingest one of them"
            )
        manifests.append(manifest)
        inputs.append(PackInput(
            path=os.path.abspath(directory),
            ingest_manifest_sha256=sha256_file(Path(directory) / INGEST_MANIFEST_NAME),
        ))
    return inputs, manifests, manifests[0].image_settings


def _tokenize(options, inputs, manifests, image_settings, work, progress) -> tuple[list[str], list[TokenizedShard]]:
    tasks = [
        TokenizeTask(
            input_index=i, shard_path=os.path.join(source.path, shard.name), sha256=shard.sha256,
            output_prefix=str(work / "tokenized" / f"{i:03d}-{shard.name.removesuffix('.tar')}"),
        )
        for i, (source, manifest) in enumerate(zip(inputs, manifests))
        for shard in manifest.shards
    ]
    todo = [task for task in tasks if not tokenized_shard_done(task.output_prefix)]
    settings = TokenizeSettings(tokenizer_path=options.tokenizer, image_settings=image_settings,
                                seq_len=options.seq_len, long_doc=options.long_doc)
    with ProgressBar(total=len(tasks), initial=len(tasks) - len(todo), desc="tokenize", unit="shard",
                     enabled=progress) as bar:
        for _ in ordered_map(tokenize_shard, todo, workers=min(options.workers, max(len(todo), 1)), chunk_size=1,
                             initializer=init_tokenize_worker, initargs=(settings,)):
            bar.update()
    prefixes = [task.output_prefix for task in tasks]
    return prefixes, [load_tokenized_shard(prefix) for prefix in prefixes]


def _write_shards(
    options: PackOptions, sequences: list[list[int]], documents: list[tuple[int, TokenizedDocument]],
    write_settings: WriteSettings, progress: bool,
) -> list[ShardRecord]:
    count = -(-len(sequences) // options.shard_size)
    records: list[ShardRecord | None] = [read_record(write_settings.record_dir, j) for j in range(count)]
    for j, record in enumerate(records):
        if record is not None and not _shard_intact(Path(options.out), record.entry):
            records[j] = None
    tasks = [
        WriteTask(
            shard_index=j,
            sequences=[
                [documents[d] for d in sequence]
                for sequence in sequences[j * options.shard_size : (j + 1) * options.shard_size]
            ],
        )
        for j in range(count)
        if records[j] is None
    ]
    written = ordered_map(write_packed_shard, tasks, workers=min(options.workers, max(len(tasks), 1)), chunk_size=1,
                          initializer=init_write_worker, initargs=(write_settings,))
    with ProgressBar(total=count, initial=count - len(tasks), desc="pack", unit="shard", enabled=progress) as bar:
        for task, record in zip(tasks, written):
            records[task.shard_index] = record
            bar.update()
    return records


def _shard_intact(out: Path, entry: ShardEntry) -> bool:
    shard, index = out / entry.name, out / index_name(entry.name)
    return (
        shard.exists() and index.exists() and shard.stat().st_size == entry.bytes
        and sha256_file(shard) == entry.sha256 and sha256_file(index) == entry.index_sha256
    )


def _manifest(
    identity: PackIdentity, tokenizer: Tokenizer, image_settings: ImageSettings, inputs: list[PackInput],
    tokenized: list[TokenizedShard], records: list[ShardRecord], edges: list[int],
) -> PackedManifest:
    stats: dict[str, KindStats] = {}
    histogram = np.zeros(len(edges) - 1, dtype=np.int64)
    for record in records:
        for kind, counts in record.tokens_per_kind.items():
            stats[kind] = stats.get(kind, KindStats()) + counts
        histogram += record.histogram_counts
    num_samples = sum(record.entry.num_samples for record in records)
    seq_len = identity.seq_len
    padding = num_samples * seq_len - sum(kind.tokens for kind in stats.values())
    dropped: Counter[str] = Counter()
    for shard in tokenized:
        dropped.update(shard.dropped)
    return PackedManifest(
        seq_len=seq_len,
        tokenizer_fingerprint=identity.tokenizer_fingerprint,
        special_ids=dict(tokenizer.special_ids),
        pad_id=tokenizer.pad_id,
        image_settings=image_settings,
        pack_settings=identity.pack_settings,
        sources=[
            PackSource(path=source.path, ingest_manifest_sha256=source.ingest_manifest_sha256,
                       samples=sum(shard.samples for shard in tokenized if shard.input == number))
            for number, source in enumerate(inputs)
        ],
        shards=[record.entry for record in records],
        num_samples=num_samples,
        num_documents=int(histogram.sum()),
        tokens_per_kind=dict(sorted(stats.items())),
        padding_fraction=padding / (num_samples * seq_len),
        dropped=dict(sorted(dropped.items())),
        split_documents=sum(shard.split_documents for shard in tokenized),
        document_length_histogram=LengthHistogram(edges=edges, counts=histogram.tolist()),
    )
