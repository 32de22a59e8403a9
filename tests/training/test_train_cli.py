"""The entry point's command line: --help, the resolved config (--dry-run), user errors exit 2 with the fix."""

import json
import subprocess
import sys

import pytest

from megatron_vl.training.train import main


def test_help_lists_the_options_and_environment():
    result = subprocess.run([sys.executable, "-m", "megatron_vl.training.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for text in ("--recipe", "--model", "--set", "--init-from", "MVL_DATA_ROOT", "MVL_CHECKPOINT_ROOT", "--world-size",
                 "WORLD_SIZE", "#SBATCH"):
        assert text in result.stdout


def test_dry_run_prints_the_resolved_run(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVL_DATA_ROOT", str(data_root))
    monkeypatch.setenv("MVL_CHECKPOINT_ROOT", str(tmp_path))
    monkeypatch.delenv("MVL_LOG_ROOT", raising=False)
    monkeypatch.delenv("MVL_TOKENIZER", raising=False)
    code = main(["--recipe", "stage2_vit", "--model", "tiny", "--set", "seq_len=128", "--set", "trains.vision_lr=2e-4",
                 "--init-from", "none", "--dry-run", "--dry-run-platform", "here"])
    assert code == 0
    run = json.loads(capsys.readouterr().out)
    assert run["recipe"]["trains"]["vision_lr"] == 2e-4 and run["init_from"] is None
    assert run["data"]["blend"][1]["path"] == str(data_root / "packed" / "128" / "interleaved")
    assert run["checkpoint_dir"] == str(tmp_path / "stage2_vit") and run["log_dir"] == str(tmp_path / "logs" / "stage2_vit")
    assert run["paths"]["tokenizer"] == str(data_root / "tokenizer")
    assert run["train_iterations"] == 20 * 1024 // 128 and run["bf16"] is False
    assert run["platform"] == {"device": "cpu", "device_name": "cpu", "layer_backend": "local", "peak_flops": None}
    assert run["plan"]["world_size_from"].startswith("one model replica") and run["plan"]["notes"] == []


def test_dry_run_without_a_tokenizer_plans_the_gpu_run(tmp_path, monkeypatch, capsys):
    for variable in ("MVL_TOKENIZER", "MVL_DATA_ROOT", "WORLD_SIZE", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["--recipe", "stage4_32k", "--model", "mimo_vl_7b", "--data-root", str(tmp_path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    run = json.loads(captured.out)
    assert run["bf16"] is True and run["model"]["dtype"] == "bfloat16" and run["model"]["image_token_id"] == 151655
    assert run["model"]["video_token_id"] == 151656
    assert run["platform"]["device"] == "cuda" and run["platform"]["layer_backend"] == "transformer_engine"
    plan = run["plan"]
    assert plan["world_size"] == 256 and plan["world_size_from"] == "launch/stage4_32k.sh #SBATCH lines"
    assert (plan["context_parallel"], plan["micro_batches_per_step"], plan["pipeline_bubble_fraction"]) == (2, 2, 0.0)
    memory = plan["memory_gib_per_gpu"]
    parts = ("parameters", "gradients", "optimizer_state", "activations")
    assert memory["total"] == pytest.approx(sum(memory[part] for part in parts), abs=0.03)
    assert "no tokenizer at" in captured.err and "no GPU here" in captured.err

    monkeypatch.setenv("WORLD_SIZE", "16")
    main(["--recipe", "stage1_projector", "--model", "tiny", "--data-root", str(tmp_path), "--dry-run", "--world-size", "4"])
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert (plan["world_size"], plan["world_size_from"], plan["micro_batches_per_step"]) == (4, "--world-size", 4)


def test_user_errors_exit_2_with_the_fix(data_root, capsys, monkeypatch):
    monkeypatch.delenv("MVL_TRACEBACK", raising=False)
    assert main(["--recipe", "stage9", "--model", "tiny", "--data-root", str(data_root), "--dry-run"]) == 2
    assert main(["--recipe", "stage1_projector", "--model", "tiny", "--data-root", str(data_root), "--set",
                 "checkpoint.keep_last=0", "--dry-run"]) == 2
    assert main(["--recipe", "stage1_projector", "--model", "tiny", "--world-size", "4"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith("python -m megatron_vl.training.train: error: no recipe 'stage9'")
    assert "keep_last must be a positive integer" in errors[1] and "Traceback" not in "".join(errors)
    assert "--world-size only sets the world size of the --dry-run plan" in errors[2]
