"""Training data loader benchmark: micro-batch throughput by worker count, and the cost of planning.

1. Throughput of ``TrainLoader`` on a demo-corpus dataset packed at 8192 tokens (pictures of 224 to
   896 pixels a side) with 0, 1 and 2 worker processes: sequences per second end to end (bounded
   by the free CPU cores), and the training process's own time per sequence (with workers: taking
   a batch they already prepared, i.e. receiving its tensors through shared memory), with the
   ratio to doing all the work itself. A worker reads the tar members, decodes the PNGs and cuts
   them into float32 patches (about 135 MB per 8K sequence of mostly image tokens).
2. Planning in the training process, per optimizer step at the 7B recipe's scale: taking the next
   global batch of 2048 positions from a blend of 10 datasets of 10M sequences each, and one
   rank's share (DP 64) of replacement candidates; plus the one-off shuffle of a 10M-sequence epoch.

Run by hand: ``python benchmarks/data_loader.py`` (about a minute on 2 cores); see --help.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep import train_tokenizer  # noqa: E402
from data_prep.demo import command as demo_corpus  # noqa: E402
from data_prep.ingest import command as ingest  # noqa: E402
from data_prep.pack import command as pack  # noqa: E402
from megatron_vl.config.data import DataConfig  # noqa: E402
from megatron_vl.data.blending import BlendedStream  # noqa: E402
from megatron_vl.data.train_loader import MAX_REPLACEMENTS, TrainLoader  # noqa: E402
from megatron_vl.tokenizer import load_tokenizer  # noqa: E402
from tests.data_prep.cli import run_subcommand  # noqa: E402

SEQ_LEN = 8192


def packed_dataset(root: Path, documents_per_kind: int) -> tuple[Path, str]:
    run_subcommand(demo_corpus, "--out", root / "raw", "--samples-per-kind", documents_per_kind, "--long-samples",
                   documents_per_kind // 4, "--min-side", 224, "--max-side", 896, "--workers", 2)
    run_subcommand(train_tokenizer, "--input", root / "raw", "--vocab-size", 4096, "--out", root / "tokenizer")
    run_subcommand(ingest, "--input", root / "raw", "--out", root / "samples", "--workers", 2)
    run_subcommand(pack, "--input", root / "samples", "--tokenizer", root / "tokenizer", "--out", root / "packed",
                   "--seq-len", SEQ_LEN, "--workers", 2)
    return root / "packed", load_tokenizer(root / "tokenizer").fingerprint


def throughput(dataset: Path, fingerprint: str, workers: int, micro_batches: int, settle: float) -> tuple[float, float]:
    """Sequences per second end to end, and the training process's own milliseconds per sequence:
    everything with 0 workers; with workers, taking batches they have already prepared."""
    prefetch = 4
    config = DataConfig(blend=[(str(dataset), 1.0)], seq_len=SEQ_LEN, global_batch_size=1, num_workers=workers,
                        prefetch_factor=prefetch)
    batches = iter(TrainLoader(config, tokenizer_fingerprint=fingerprint))
    next(batches)  # worker start-up is not throughput
    started = time.perf_counter()
    for _ in itertools.islice(batches, micro_batches):
        pass
    end_to_end = micro_batches / (time.perf_counter() - started)
    if not workers:
        return end_to_end, 1000 / end_to_end
    time.sleep(settle)  # the workers fill their prefetch queues
    started = time.perf_counter()
    for _ in itertools.islice(batches, workers * prefetch):
        pass
    return end_to_end, 1000 * (time.perf_counter() - started) / (workers * prefetch)


def planning(steps: int) -> tuple[float, float, float]:
    datasets, global_batch, data_parallel = 10, 2048, 64
    stream = BlendedStream([10_000_000] * datasets, [1.0 + k for k in range(datasets)], seed=0)
    started = time.perf_counter()
    for dataset in range(datasets):
        stream.permutation(dataset, 0)
    shuffle = (time.perf_counter() - started) / datasets
    cursor = stream.start()
    take = candidates = 0.0
    for _ in range(steps):
        started = time.perf_counter()
        picks, cursor = stream.take(cursor, global_batch)
        middle = time.perf_counter()
        for dataset, draw in picks[: global_batch // data_parallel]:
            stream.sample_indices(dataset, draw, 1 + MAX_REPLACEMENTS)
        take += middle - started
        candidates += time.perf_counter() - middle
    return shuffle, take / steps, candidates / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents-per-kind", type=int, default=120, help="demo-corpus documents per kind (default 120)")
    parser.add_argument("--micro-batches", type=int, default=40, help="sequences read per measurement (default 40)")
    parser.add_argument("--settle", type=float, default=20,
                        help="seconds the workers get to fill their queues before the training process's share is timed")
    parser.add_argument("--steps", type=int, default=20, help="global batches planned (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        dataset, fingerprint = packed_dataset(Path(root), args.documents_per_kind)
        rows = [(workers, *throughput(dataset, fingerprint, workers, args.micro_batches, args.settle))
                for workers in (0, 1, 2)]
    print(f"\n1. loader throughput, {args.micro_batches} sequences of {SEQ_LEN} tokens (micro-batch 1), "
          f"{os.cpu_count()} CPUs")
    print(f"{'workers':>8}{'seq/s':>8}{'training process ms/seq':>25}{'relief':>8}")
    for workers, per_second, own_ms in rows:
        print(f"{workers:>8}{per_second:>8.2f}{own_ms:>25.1f}{rows[0][2] / own_ms:>7.1f}x")
    shuffle, take, candidates = planning(args.steps)
    print("\n2. planning in the training process (10 datasets of 10M sequences, global batch 2048, DP 64)")
    print(f"{'what':<52}{'ms':>9}")
    print(f"{'shuffle of one epoch of a dataset (once per epoch)':<52}{1000 * shuffle:>9.1f}")
    print(f"{'next global batch of the blend (per step)':<52}{1000 * take:>9.2f}")
    print(f"{'rows of one rank and their stand-ins (per step)':<52}{1000 * candidates:>9.2f}")


if __name__ == "__main__":
    main()
