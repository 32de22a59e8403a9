"""``bash launch/prepare_data.sh submit ...`` on the real single-node SLURM cluster: 3 partitions as array tasks,
one task's ingest killed (SIGKILL) after it wrote its shards and before its marker, the later jobs cancelled by
their dependency, then the same command again: only the killed partition is redone, and the merged packed dataset
holds exactly the documents, tokens and loss masks of a one-process ingest + pack of the same files.

What may differ from the one-process run (see the README): which documents share a packed sequence, hence the
padding, the number, names and order of shards and sequences, and the sample keys.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import train_tokenizer
from data_prep.demo import command as demo_corpus
from data_prep.ingest import command as ingest
from data_prep.inspect.verify import verify_dataset
from data_prep.pack import command as pack
from data_prep.partitions import MARKER_NAME
from megatron_vl.data.packed_manifest import PackedManifest
from tests.data_prep.cli import run_subcommand
from tests.data_prep.partitions.test_partitioned_preparation import documents

REPO = Path(__file__).resolve().parents[2]
N = 3
SEQ_LEN = 512
KILLED = 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """Six raw JSONL files (two per kind, so that each of 3 partitions gets two) with duplicate images across
    files of different partitions, and a tokenizer."""
    root = tmp_path_factory.mktemp("prepare_data")
    raw = root / "raw"
    run_subcommand(demo_corpus, "--out", raw, "--samples-per-kind", 12, "--long-samples", 0, "--min-side", 56,
                   "--max-side", 84, "--kinds", "caption", "ocr", "interleaved", "--seed", 7, "--jpeg-fraction", 0)
    for kind in ("caption", "ocr", "interleaved"):
        lines = (raw / f"{kind}.jsonl").read_text().splitlines()
        (raw / f"{kind}.jsonl").unlink()
        (raw / f"{kind}_a.jsonl").write_text("\n".join(lines[:6]) + "\n")
        # the second half repeats two documents of the first half: duplicates that dedup-plan drops across partitions
        (raw / f"{kind}_b.jsonl").write_text("\n".join([*lines[6:], *lines[:2]]) + "\n")
    run_subcommand(train_tokenizer, "--input", raw, "--vocab-size", 512, "--out", root / "tokenizer")
    return raw, root / "tokenizer"


def submit(cluster, raw: Path, tokenizer: Path, root: Path, **env: str) -> dict[str, int]:
    """The user's one command; the ids of the four jobs it queued."""
    command = ["bash", str(REPO / "launch" / "prepare_data.sh"), "submit", "--input", str(raw), "--work",
               str(root / "work"), "--out", str(root / "packed"), "--tokenizer", str(tokenizer), "--seq-len",
               str(SEQ_LEN), "--partitions", str(N), "--cpus-per-task", "1", "--ingest-args", "--shard-size 1",
               "--pack-args", "--shard-size 4"]
    environment = dict(cluster.env, MVL_PYTHON=sys.executable, PYTHONWARNINGS="ignore")
    environment.pop("MVL_PREPARE_FAULT", None)
    environment.update(env)
    output = subprocess.run(command, env=environment, cwd=root, check=True, capture_output=True, text=True).stdout
    return {name: int(job) for name, job in re.findall(r"([a-z-]+)=(\d+)", output)}


def log_of(root: Path, step: str, job: int, task: int) -> str:
    return (root / "work" / "logs" / f"mvl-prepare-{step}-{job}_{task}.out").read_text()


def test_killed_array_task_then_the_same_command_equals_one_process(cluster, corpus, tmp_path):
    raw, tokenizer = corpus
    samples = tmp_path / "work" / "samples"
    first = submit(cluster, raw, tokenizer, tmp_path, MVL_PREPARE_FAULT=f"ingest:{KILLED}")
    assert cluster.wait(first["merge"], timeout=300) != "COMPLETED"
    assert "fault injection: SIGKILL to ingest" in log_of(tmp_path, "ingest", first["ingest"], KILLED)
    killed = samples / f"partition-{KILLED:05d}-of-{N:05d}"
    assert killed.is_dir() and not (killed / MARKER_NAME).exists(), "the killed task left no half-written partition"
    assert not (tmp_path / "packed").exists()
    markers = {path: path.stat().st_mtime_ns for path in samples.glob(f"*/{MARKER_NAME}")}
    assert len(markers) == N - 1

    second = submit(cluster, raw, tokenizer, tmp_path)
    state = cluster.wait(second["merge"], timeout=300)
    assert state == "COMPLETED", log_of(tmp_path, "merge", second["merge"], 0)[-4000:]
    assert {path: path.stat().st_mtime_ns for path in markers} == markers, "a finished partition was redone"
    assert "redoing it from scratch" in log_of(tmp_path, "ingest", second["ingest"], KILLED)
    assert ": OK (" in log_of(tmp_path, "merge", second["merge"], 0)

    whole = tmp_path / "whole"
    run_subcommand(ingest, "--input", raw, "--out", whole / "samples", "--workers", 1)
    run_subcommand(pack, "--input", whole / "samples", "--tokenizer", tokenizer, "--out", whole / "packed",
                   "--seq-len", SEQ_LEN, "--shard-size", 4, "--workers", 1)
    assert documents(tmp_path / "packed", tokenizer) == documents(whole / "packed", tokenizer)
    merged, single = PackedManifest.load(tmp_path / "packed"), PackedManifest.load(whole / "packed")
    assert merged.tokens_per_kind == single.tokens_per_kind
    assert merged.num_documents == single.num_documents
    assert verify_dataset(tmp_path / "packed", deep=True, progress=False) == []
