"""Progress in a log file: with output to a non-terminal stream, each stage prints one summary line, no ``\\r``."""

import re

from data_prep.__main__ import main

SUMMARY = re.compile(r"^(?P<stage>[\w.-]+): \d+ \w+( \(\d+ done before\))? in \d+\.\d s")


def stage_lines(text: str) -> list[str]:
    return [match.group("stage") for line in text.splitlines() if (match := SUMMARY.match(line))]


def test_each_stage_prints_one_line_and_no_carriage_return(demo_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    steps = [
        (["demo-corpus", "--out", str(tmp_path / "raw"), "--samples-per-kind", "3", "--long-samples", "0",
          "--kinds", "caption", "text"], ["caption", "text"]),
        (["train-tokenizer", "--input", str(demo_raw), "--vocab-size", "512", "--out", str(tmp_path / "tok")],
         ["train-tokenizer"]),
        (["ingest", "--input", str(demo_raw / "caption.jsonl"), "--out", str(tmp_path / "shards"), "--workers", "1",
          "--shard-size", "5"], ["ingest"]),
        (["pack", "--input", str(tmp_path / "shards"), "--tokenizer", str(tmp_path / "tok"), "--out",
          str(tmp_path / "packed"), "--seq-len", "512", "--shard-size", "2", "--workers", "1"], ["tokenize", "pack"]),
        (["verify", str(tmp_path / "packed"), "--deep"], ["checksums", "samples"]),
    ]
    for argv, stages in steps:
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert "\r" not in out + err, argv[0]
        assert stage_lines(err) == stages, err


def test_tqdm_disable_silences_the_progress_lines(demo_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(["ingest", "--input", str(demo_raw / "text.jsonl"), "--out", str(tmp_path), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert stage_lines(err) == [] and "ingested 12 of 12 documents" in out
