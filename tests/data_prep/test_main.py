import pytest

from data_prep.__main__ import main


def test_user_error_prints_its_fix_without_traceback(tmp_path, capsys):
    status = main(["pack", "--input", str(tmp_path), "--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("python -m data_prep pack: error: tokenizer")
    assert "Traceback" not in err


def test_mvl_traceback_shows_the_user_errors_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MVL_TRACEBACK", "1")
    with pytest.raises(ValueError, match="tokenizer"):
        main(["pack", "--input", str(tmp_path), "--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])


def test_every_subcommand_is_still_there(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("train-tokenizer", "demo-corpus", "ingest", "pack", "inspect", "verify"))
