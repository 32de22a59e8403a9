"""train-tokenizer: a tokenizer of at most the requested size from raw JSONL of every kind."""

from __future__ import annotations

import argparse
import re
import json

import pytest

from data_prep import train_tokenizer
from data_prep.demo import command as demo_corpus
from data_prep.ingest import command as ingest
from megatron_vl.tokenizer import TRAINED_SPECIAL_IDS, load_tokenizer
from tests.data_prep.cli import run_subcommand


def test_demo_tokenizer_fits_the_tiny_model(demo_raw, tmp_path, capsys):
    (tmp_path / "extra.txt").write_text("plain text lines\nare read too\n")
    (tmp_path / "bad.jsonl").write_text('{"kind": "text", "text": ""}\n{"kind": "text", "text": "ok"}\n')
    out = tmp_path / "tokenizer"
    assert run_subcommand(train_tokenizer, "--input", demo_raw, tmp_path / "extra.txt", tmp_path / "bad.jsonl",
                          "--vocab-size", 4096, "--out", out) == 0
    tokenizer = load_tokenizer(out)
    assert tokenizer.special_ids == TRAINED_SPECIAL_IDS
    assert tokenizer.vocab_size <= 4096
    caption = json.loads((demo_raw / "caption.jsonl").read_text().splitlines()[0])["caption"]
    assert tokenizer.decode(tokenizer.encode(caption)) == caption
    assert len(tokenizer.encode(caption)) < len(caption) / 2, "merges were learnt from the corpus"
    summary = capsys.readouterr().out
    assert "skipped 1 records ingest would reject: {'empty_text': 1}" in summary
    assert tokenizer.fingerprint in summary


def test_inputs_must_be_text_files(tmp_path):
    (tmp_path / "image.png").write_bytes(b"")
    with pytest.raises(ValueError, match="image.png is not a"):
        run_subcommand(train_tokenizer, "--input", tmp_path / "image.png", "--out", tmp_path / "out")


@pytest.mark.parametrize("module", [train_tokenizer, demo_corpus, ingest])
def test_help(module, capsys):
    parser = argparse.ArgumentParser(description=module.__doc__)
    module.add_arguments(parser)
    with pytest.raises(SystemExit) as exit_code:
        parser.parse_args(["--help"])
    assert exit_code.value.code == 0
    assert re.search(r"examples?:", capsys.readouterr().out)
