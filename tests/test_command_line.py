"""The one user-error policy of every entry point, and byte sizes."""

import argparse

import pytest

from megatron_vl.command_line import human_bytes, parse_byte_size, run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--size")
    return parser


def _run(args):
    return parse_byte_size(args.size) and 0


def test_a_user_error_prints_its_message_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("MVL_TRACEBACK", raising=False)
    assert run_command(_parser(), _run, ["--size", "lots"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tool: error: cannot read the byte size 'lots'") and "Traceback" not in error


def test_mvl_traceback_shows_the_traceback_of_user_errors(monkeypatch):
    monkeypatch.setenv("MVL_TRACEBACK", "1")
    with pytest.raises(ValueError, match="cannot read the byte size"):
        run_command(_parser(), _run, ["--size", "lots"])


def test_other_exceptions_are_bugs_and_keep_their_traceback():
    def broken(args):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_command(_parser(), broken, [])


@pytest.mark.parametrize("text, count", [
    ("512MB", 512 * 10**6), ("1GiB", 2**30), ("64kB", 64 * 10**3), ("1.5GB", 1_500_000_000), ("100", 100),
    ("2 tib", 2 * 2**40), ("5gb", 5 * 10**9),
])
def test_byte_sizes(text, count):
    assert parse_byte_size(text) == count


@pytest.mark.parametrize("text", ["", "GB", "-1MB", "0", "1.5XB"])
def test_bad_byte_sizes_are_refused(text):
    with pytest.raises(ValueError, match="byte size"):
        parse_byte_size(text)


def test_human_bytes():
    assert [human_bytes(n) for n in (5, 1536, 3 * 2**30)] == ["5 B", "1.5 KiB", "3.0 GiB"]
