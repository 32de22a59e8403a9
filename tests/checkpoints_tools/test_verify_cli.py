"""``python -m checkpoints_tools.verify`` passes an honest export (also without its chat template and image
processor config) and fails one whose weights drifted."""

import json
import os
import shutil
import subprocess
import sys

from safetensors.torch import save_file

from checkpoints_tools.safetensors_files import SafetensorsCheckpoint
from checkpoints_tools.to_hf import export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _verify(*args):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "checkpoints_tools.verify", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_verify_passes_then_fails_on_drifted_weights(world, tmp_path):
    checkpoint = str(world.megatron_roots[(2, 2)])
    export(checkpoint, tmp_path / "hf", progress=False)
    result = _verify("--ckpt", checkpoint, "--hf", str(tmp_path / "hf"), "--per-layer", "--threshold", "1e-4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "llm layer 3" in result.stdout and "projector" in result.stdout

    bare = tmp_path / "bare"
    shutil.copytree(tmp_path / "hf", bare)
    (bare / "chat_template.jinja").unlink()
    (bare / "preprocessor_config.json").unlink()
    tokenizer_config = json.loads((bare / "tokenizer_config.json").read_text())
    del tokenizer_config["chat_template"]
    (bare / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    result = _verify("--ckpt", checkpoint, "--hf", str(bare), "--threshold", "1e-4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "megatron-vl's chat template (the folder has none)" in result.stdout and "PASS" in result.stdout

    folder = SafetensorsCheckpoint(tmp_path / "hf")
    name = "model.norm.weight"
    shard = folder.entries[name].file
    tensors = {other: folder.get(other) for other, entry in folder.entries.items() if entry.file == shard}
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, shard)
    result = _verify("--ckpt", checkpoint, "--hf", str(tmp_path / "hf"), "--threshold", "1e-4")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout
