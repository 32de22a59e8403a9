from data_prep.__main__ import main


def test_user_error_prints_its_fix_without_traceback(tmp_path, capsys):
    status = main(["pack", "--input", str(tmp_path), "--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("python -m data_prep pack: error: tokenizer")
    assert "Traceback" not in err
