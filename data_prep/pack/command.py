"""Pack sample shards into training shards of packed sequences of exactly --seq-len tokens.

Every document of the inputs (one or more ingest outputs, concatenated) is tokenized: its text,
its images as <|vision_start|> + one <|image_pad|> per merged vision token + <|vision_end|>
(counted from the stored image size, never decoded), <|endoftext|> at the end. Documents are
shuffled with --seed, sorted by length within windows of --window documents and packed best-fit
into sequences, padded to --seq-len. Each packed sample holds tokens, labels, loss mask, M-RoPE
positions (per document, as transformers' get_rope_index), document lengths, the images'
PNG bytes and every document's provenance; manifest.json records checksums and token counts.

Documents longer than --seq-len: with --long-doc split (default) they are cut into parts at token
boundaries, never inside an image; a document with an image longer than --seq-len by itself is
dropped and counted. With --long-doc drop, every such document is dropped and counted.

The same inputs and options give byte-identical output whatever --workers is. Finished shards
are never lost: after a crash or Ctrl-C, rerun the same command and it continues where it
stopped (it refuses to continue a pack made with other options).

example:
  python -m data_prep pack --input shards/caption shards/ocr --tokenizer tok.json --out packed/8k
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep import sample_shards
from data_prep.pack.document_tokens import LONG_DOC_POLICIES
from data_prep.pack.packed_shard_writer import save_manifest
from data_prep.pack.plan_sequences import plan_sequences
from data_prep.parallel_map import ordered_map
from data_prep.pack.tokenize_shards import (
    TokenizeSettings, TokenizeTask, load_spill_index, spill_done, tokenize_shard,
)
from data_prep.pack.tokenize_shards import init_worker as init_tokenize_worker
from data_prep.pack.write_packed_shards import WriteSettings, WriteTask, read_record, write_packed_shard
from data_prep.pack.write_packed_shards import init_worker as init_write_worker
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import MANIFEST_NAME, KindStats, PackedManifest, index_name
from megatron_vl.files import sha256_file, write_atomically
from megatron_vl.tokenizer import load_tokenizer

WORK_DIR = ".pack-work"


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
    workers: int = 1
    """Worker processes; the output does not depend on it."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("pack needs at least one --input directory")
        for name in ("seq_len", "window", "shard_size", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.long_doc not in LONG_DOC_POLICIES:
            raise ValueError(f"--long-doc must be one of {LONG_DOC_POLICIES}, got {self.long_doc!r}")


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
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: all CPUs)")


def run(args: argparse.Namespace) -> int:
    options = PackOptions(
        inputs=args.input, tokenizer=args.tokenizer, out=args.out, seq_len=args.seq_len, seed=args.seed,
        window=args.window, shard_size=args.shard_size, long_doc=args.long_doc, workers=args.workers,
    )
    started = time.monotonic()
    try:
        manifest = pack(options)
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept; run the same command again to continue", file=sys.stderr)
        return 130
    if manifest is not None:
        seconds = time.monotonic() - started
        samples = sum(source["samples"] for source in manifest.sources)
        print(f"\npacked {samples} samples in {seconds:.1f}s ({samples / max(seconds, 1e-9):.0f} samples/s, "
              f"workers: {options.workers})")
        print_summary(manifest, options.out)
    return 0


def pack(options: PackOptions, *, progress: bool = True) -> PackedManifest | None:
    """Pack, continuing an interrupted run in ``options.out``; returns None if it was already done."""
    tokenizer = load_tokenizer(options.tokenizer)
    sources, image_settings = _read_inputs(options.inputs)
    settings = {
        "seq_len": options.seq_len,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "pack_settings": {"seed": options.seed, "window": options.window, "shard_size": options.shard_size,
                          "long_doc": options.long_doc},
        "sources": [{key: source[key] for key in ("path", "ingest_manifest_sha256")} for source in sources],
    }
    out = Path(options.out)
    if _already_packed(out, settings):
        print(f"{out} already holds this pack (manifest.json matches the options); nothing to do")
        return None
    work = _prepare_work_dir(out, settings)

    spill_prefixes, spills = _tokenize(options, sources, image_settings, work, progress)
    documents = [(number, record) for number, spill in enumerate(spills) for record in spill["documents"]]
    lengths = np.array([record["length"] for _, record in documents], dtype=np.int64)
    sequences = plan_sequences(lengths, seq_len=options.seq_len, seed=options.seed, window=options.window)
    if not sequences:
        raise ValueError(f"no document of {options.inputs} fits a sequence of {options.seq_len} tokens; "
                         "nothing to pack (see the dropped counts of a --long-doc split run)")

    edges = _histogram_edges(options.seq_len)
    write_settings = WriteSettings(
        out_dir=str(out), record_dir=str(work / "shards"), seq_len=options.seq_len,
        spills=[
            {"prefix": prefix, **{key: spill[key] for key in ("input", "shard", "shard_path")}}
            for prefix, spill in zip(spill_prefixes, spills)
        ],
        pad_id=tokenizer.pad_id, image_pad_id=tokenizer.image_pad_id, vision_start_id=tokenizer.vision_start_id,
        patch_size=image_settings.patch_size, merge_size=image_settings.merge_size, histogram_edges=edges,
    )
    records = _write_shards(options, sequences, documents, write_settings, progress)

    for number, source in enumerate(sources):
        source["samples"] = sum(spill["samples"] for spill in spills if spill["input"] == number)
    manifest = _manifest(settings, tokenizer, image_settings, sources, spills, records, edges)
    save_manifest(manifest, out)
    shutil.rmtree(work)
    return manifest


def _read_inputs(inputs: list[str]) -> tuple[list[dict], ImageSettings]:
    sources, image_settings = [], None
    for directory in inputs:
        manifest = sample_shards.load_manifest(directory)
        settings = ImageSettings.from_dict(manifest["image_settings"])
        if image_settings is not None and settings != image_settings:
            raise ValueError(
                f"{directory} was ingested with image settings {settings.to_dict()} but {inputs[0]} with "
                f"{image_settings.to_dict()}; pack inputs need the same settings: re-ingest one of them"
            )
        image_settings = settings
        path = os.path.join(directory, sample_shards.MANIFEST_NAME)
        sources.append({
            "path": os.path.abspath(directory),
            "ingest_manifest_sha256": sha256_file(Path(path)),
            "shards": manifest["shards"],
        })
    return sources, image_settings


def _already_packed(out: Path, settings: dict) -> bool:
    if not (out / MANIFEST_NAME).exists():
        return False
    manifest = PackedManifest.load(out)
    recorded = {
        "seq_len": manifest.seq_len,
        "tokenizer_fingerprint": manifest.tokenizer_fingerprint,
        "pack_settings": manifest.pack_settings,
        "sources": [{key: source[key] for key in ("path", "ingest_manifest_sha256")} for source in manifest.sources],
    }
    _refuse_other_settings(out, recorded, settings)
    return True


def _prepare_work_dir(out: Path, settings: dict) -> Path:
    work = out / WORK_DIR
    settings_path = work / "settings.json"
    if settings_path.exists():
        _refuse_other_settings(out, json.loads(settings_path.read_text()), settings)
    else:
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out {out} is not empty and holds no pack in progress; choose an empty or new directory")
        (work / "tokenized").mkdir(parents=True, exist_ok=True)
        (work / "shards").mkdir(exist_ok=True)
        write_atomically(settings_path, json.dumps(settings, indent=1, sort_keys=True).encode())
    return work


def _refuse_other_settings(out: Path, recorded: dict, wanted: dict) -> None:
    differing = [
        f"{name}: {recorded.get(name)!r} there, {wanted[name]!r} now"
        for name in wanted
        if recorded.get(name) != wanted[name]
    ]
    if differing:
        raise ValueError(
            f"--out {out} holds a pack made with other inputs or options ({'; '.join(differing)}); rerun with the "
            "original options to continue it, or choose a new --out"
        )


def _tokenize(options, sources, image_settings, work, progress) -> tuple[list[str], list[dict]]:
    tasks = [
        TokenizeTask(
            input_index=i, shard_path=os.path.join(source["path"], shard["name"]), sha256=shard["sha256"],
            spill_prefix=str(work / "tokenized" / f"{i:03d}-{shard['name'].removesuffix('.tar')}"),
        )
        for i, source in enumerate(sources)
        for shard in source["shards"]
    ]
    todo = [task for task in tasks if not spill_done(task.spill_prefix)]
    settings = TokenizeSettings(tokenizer_path=options.tokenizer, image_settings=image_settings.to_dict(),
                                seq_len=options.seq_len, long_doc=options.long_doc)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="tokenize", unit="shard", disable=not progress)
    for _ in ordered_map(tokenize_shard, todo, workers=min(options.workers, max(len(todo), 1)), chunk_size=1,
                         initializer=init_tokenize_worker, initargs=(settings,)):
        bar.update()
    bar.close()
    prefixes = [task.spill_prefix for task in tasks]
    return prefixes, [load_spill_index(prefix) for prefix in prefixes]


def _write_shards(options, sequences, documents, write_settings, progress) -> list[dict]:
    count = -(-len(sequences) // options.shard_size)
    records: list[dict | None] = [read_record(write_settings.record_dir, j) for j in range(count)]
    for j, record in enumerate(records):
        if record is not None and not _shard_intact(Path(options.out), record["entry"]):
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
    bar = tqdm(total=count, initial=count - len(tasks), desc="pack", unit="shard", disable=not progress)
    written = ordered_map(write_packed_shard, tasks, workers=min(options.workers, max(len(tasks), 1)), chunk_size=1,
                          initializer=init_write_worker, initargs=(write_settings,))
    for task, record in zip(tasks, written):
        records[task.shard_index] = record
        bar.update()
    bar.close()
    return records


def _shard_intact(out: Path, entry) -> bool:
    shard, index = out / entry.name, out / index_name(entry.name)
    return (
        shard.exists() and index.exists() and shard.stat().st_size == entry.bytes
        and sha256_file(shard) == entry.sha256 and sha256_file(index) == entry.index_sha256
    )


def _histogram_edges(seq_len: int) -> list[int]:
    """Document length buckets: 1, 64, 128, 256, ... powers of two below seq_len, then seq_len + 1."""
    edges = [1] + [2**k for k in range(6, 32) if 2**k < seq_len] + [seq_len + 1]
    return sorted(set(edges))


def _manifest(settings, tokenizer, image_settings, sources, spills, records, edges) -> PackedManifest:
    stats: dict[str, KindStats] = {}
    histogram = np.zeros(len(edges) - 1, dtype=np.int64)
    for record in records:
        for kind, values in record["tokens_per_kind"].items():
            stats.setdefault(kind, KindStats()).add(KindStats(**values))
        histogram += record["histogram_counts"]
    num_samples = sum(record["entry"].num_samples for record in records)
    seq_len = settings["seq_len"]
    padding = num_samples * seq_len - sum(kind.tokens for kind in stats.values())
    dropped: Counter[str] = Counter()
    for spill in spills:
        dropped.update(spill["dropped"])
    return PackedManifest(
        seq_len=seq_len,
        tokenizer_fingerprint=settings["tokenizer_fingerprint"],
        special_ids=dict(tokenizer.special_ids),
        pad_id=tokenizer.pad_id,
        image_settings=image_settings.to_dict(),
        pack_settings=settings["pack_settings"],
        sources=[{key: source[key] for key in ("path", "ingest_manifest_sha256", "samples")} for source in sources],
        shards=[record["entry"] for record in records],
        num_samples=num_samples,
        num_documents=int(histogram.sum()),
        tokens_per_kind=dict(sorted(stats.items())),
        padding_fraction=padding / (num_samples * seq_len),
        dropped=dict(sorted(dropped.items())),
        split_documents=sum(spill["split_documents"] for spill in spills),
        document_length_histogram={"edges": edges, "counts": histogram.tolist()},
    )


def print_summary(manifest: PackedManifest, out: str) -> None:
    print(f"\n{out}: {manifest.num_samples} sequences of {manifest.seq_len} tokens in {len(manifest.shards)} shards, "
          f"{manifest.num_documents} documents, padding {100 * manifest.padding_fraction:.2f}%")
    print(f"  {'kind':<14}{'documents':>11}{'tokens':>14}{'image tok':>14}{'loss tok':>14}{'images':>9}")
    for kind, stats in manifest.tokens_per_kind.items():
        print(f"  {kind:<14}{stats.documents:>11}{stats.tokens:>14}{stats.image_tokens:>14}{stats.loss_tokens:>14}"
              f"{stats.images:>9}")
    print(f"  split into parts (longer than {manifest.seq_len}): {manifest.split_documents} documents")
    if manifest.dropped:
        for reason, count in manifest.dropped.items():
            print(f"  dropped ({reason}): {count} documents")
    else:
        print("  dropped: none")
