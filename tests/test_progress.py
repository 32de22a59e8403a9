"""Progress bars: live on a terminal, one summary line in a log file, silent under TQDM_DISABLE."""

import io

from megatron_vl.progress import ProgressBar, track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_line_per_stage_and_no_carriage_returns(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    log = io.StringIO()
    with ProgressBar(desc="pack", unit="shard", total=12, initial=2, stream=log) as bar:
        for _ in range(10):
            bar.update()
        bar.set_postfix(rejected=3)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in log.getvalue()
    assert lines[0].startswith("pack: 10 shards (2 done before) in ") and lines[0].endswith(", rejected 3")


def test_a_terminal_gets_a_live_bar(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    terminal = Terminal()
    with ProgressBar(desc="ingest", unit="docs", total=3, stream=terminal) as bar:
        bar.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_tqdm_disable_silences_both(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for stream in (io.StringIO(), Terminal()):
        with ProgressBar(desc="x", unit="it", total=2, stream=stream) as bar:
            bar.update(2)
        assert stream.getvalue() == ""


def test_disabled_bars_print_nothing(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    log = io.StringIO()
    ProgressBar(desc="x", unit="it", enabled=False, stream=log).close()
    assert log.getvalue() == ""


def test_track_counts_what_it_yields(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert list(track(["a", "b"], desc="files", unit="file")) == ["a", "b"]
    assert capsys.readouterr().err.startswith("files: 2 files in ")


def test_transformers_bars_follow_ours(monkeypatch):
    from transformers.utils import logging as transformers_logging

    from megatron_vl.progress import quiet_transformers_bars

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    transformers_logging.enable_progress_bar()  # an earlier test's tool call may have switched them off
    try:
        quiet_transformers_bars(Terminal())
        assert transformers_logging.is_progress_bar_enabled()
        quiet_transformers_bars(io.StringIO())
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
