"""A data root laid out as the recipes read it, made with the real data_prep tools.

``DATA_ROOT/tokenizer`` and ``DATA_ROOT/packed/128/{caption,interleaved,eval}``: demo-corpus ->
train-tokenizer -> ingest -> pack, small (128-token sequences, 56-84 px pictures). ``eval`` packs a
corpus drawn with another seed.
"""

from __future__ import annotations

from pathlib import Path

from data_prep import train_tokenizer
from data_prep.demo import command as demo_corpus
from data_prep.ingest import command as ingest
from data_prep.pack import command as pack
from megatron_vl.config.recipe import packed_dataset_dir
from tests.data_prep.cli import run_subcommand

SEQ_LEN = 128
KINDS = ("caption", "interleaved")


def build_data_root(root: Path, document_alignment: int = 1) -> Path:
    """The data root, packed with ``pack --document-alignment document_alignment``."""
    work = root / "work"
    for seed, corpus in ((3, "train"), (4, "heldout")):
        run_subcommand(demo_corpus, "--out", work / corpus, "--samples-per-kind", 24, "--long-samples", 0,
                       "--min-side", 56, "--max-side", 84, "--kinds", *KINDS, "--seed", seed, "--jpeg-fraction", 0)
    run_subcommand(train_tokenizer, "--input", work / "train", "--vocab-size", 512, "--out", root / "tokenizer")
    sources = {kind: [work / "train" / f"{kind}.jsonl"] for kind in KINDS}
    sources["eval"] = [work / "heldout" / f"{kind}.jsonl" for kind in KINDS]
    for name, inputs in sources.items():
        run_subcommand(ingest, "--input", *inputs, "--out", work / f"samples_{name}", "--workers", 1)
        run_subcommand(pack, "--input", work / f"samples_{name}", "--tokenizer", root / "tokenizer", "--out",
                       packed_dataset_dir(root, SEQ_LEN, name), "--seq-len", SEQ_LEN, "--workers", 1,
                       "--document-alignment", document_alignment)
    return root
