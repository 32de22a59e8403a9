"""The entry point's command line: --help, the resolved config (--dry-run), user errors exit 2 with the fix."""

import json
import subprocess
import sys

from megatron_vl.training.train import main


def test_help_lists_the_options_and_environment():
    result = subprocess.run([sys.executable, "-m", "megatron_vl.training.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for text in ("--recipe", "--model", "--set", "--init-from", "MVL_DATA_ROOT", "MVL_CHECKPOINT_ROOT"):
        assert text in result.stdout


def test_dry_run_prints_the_resolved_run(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVL_DATA_ROOT", str(data_root))
    monkeypatch.setenv("MVL_CHECKPOINT_ROOT", str(tmp_path))
    monkeypatch.delenv("MVL_LOG_ROOT", raising=False)
    monkeypatch.delenv("MVL_TOKENIZER", raising=False)
    code = main(["--recipe", "stage2_vit", "--model", "tiny", "--set", "seq_len=128", "--set", "trains.vision_lr=2e-4",
                 "--init-from", "none", "--dry-run"])
    assert code == 0
    run = json.loads(capsys.readouterr().out)
    assert run["recipe"]["trains"]["vision_lr"] == 2e-4 and run["init_from"] is None
    assert run["data"]["blend"][1]["path"] == str(data_root / "packed" / "128" / "interleaved")
    assert run["checkpoint_dir"] == str(tmp_path / "stage2_vit") and run["log_dir"] == str(tmp_path / "logs" / "stage2_vit")
    assert run["paths"]["tokenizer"] == str(data_root / "tokenizer")
    assert run["train_iterations"] == 20 * 1024 // 128 and run["bf16"] is False
    assert run["platform"] == {"device": "cpu", "device_name": "cpu", "layer_backend": "local", "peak_flops": None}


def test_user_errors_exit_2_with_the_fix(data_root, capsys, monkeypatch):
    monkeypatch.delenv("MVL_TRACEBACK", raising=False)
    assert main(["--recipe", "stage9", "--model", "tiny", "--data-root", str(data_root), "--dry-run"]) == 2
    assert main(["--recipe", "stage1_projector", "--model", "tiny", "--data-root", str(data_root), "--set",
                 "checkpoint.keep_last=0", "--dry-run"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith("python -m megatron_vl.training.train: error: no recipe 'stage9'")
    assert "keep_last must be a positive integer" in errors[1] and "Traceback" not in "".join(errors)
