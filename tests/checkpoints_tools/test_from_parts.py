"""Stage 1's start: a Qwen2.5-VL ViT, a text-only LLM with MTP layers (left out, with a note) and a fresh projector."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from checkpoints_tools.from_hf import ImportRequest, import_checkpoint
from checkpoints_tools.safetensors_files import SafetensorsCheckpoint
from checkpoints_tools.to_hf import export
from megatron_vl.training import checkpoint_files

MTP_LAYERS = 2


@pytest.fixture(scope="module")
def text_llm(world, tmp_path_factory):
    """A MiMo-7B-Base-like Qwen2 checkpoint of the tiny LLM's shape, with MTP layers in an extra shard."""
    language = world.config.language
    config = Qwen2Config(
        vocab_size=language.vocab_size, hidden_size=language.hidden_size, intermediate_size=language.ffn_hidden_size,
        num_hidden_layers=language.num_layers, num_attention_heads=language.num_attention_heads,
        num_key_value_heads=language.num_query_groups, rms_norm_eps=language.norm_eps, rope_theta=language.rope_theta,
        max_position_embeddings=language.max_position_embeddings, tie_word_embeddings=False,
    )
    torch.manual_seed(5)
    model = Qwen2ForCausalLM(config)
    directory = tmp_path_factory.mktemp("llm") / "mimo-base"
    model.save_pretrained(directory, max_shard_size="300KB")
    load = json.loads((directory / "model.safetensors.index.json").read_text())
    mtp = {f"model.mtp_layers.{i}.{part}.weight": torch.randn(language.hidden_size)
           for i in range(MTP_LAYERS) for part in ("token_layernorm", "hidden_layernorm")}
    save_file(mtp, directory / "model-mtp.safetensors")
    load["weight_map"].update(dict.fromkeys(mtp, "model-mtp.safetensors"))
    (directory / "model.safetensors.index.json").write_text(json.dumps(load))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((world.tokenizer_dir / name).read_bytes())
    return directory, {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_parts_become_one_checkpoint(world, text_llm, tmp_path):
    llm_dir, llm_weights = text_llm
    summary = import_checkpoint(
        ImportRequest(out=tmp_path / "init", vision=world.hf_dir, llm=llm_dir, tensor_parallel=2, pipeline_parallel=2),
        progress=False,
    )
    notes = " ".join(summary["notes"])
    assert f"left out {MTP_LAYERS} multi-token-prediction layer(s) ({2 * MTP_LAYERS} tensors)" in notes
    assert "initialised the projector" in notes
    record = checkpoint_files.read_run_record(checkpoint_files.iteration_dir(tmp_path / "init", 0))
    assert record["model"]["language"]["mrope_section"] == [2, 3, 3]
    assert record["written_by"] == "checkpoints_tools.from_hf"

    export(tmp_path / "init", tmp_path / "hf", progress=False)
    exported, vision = SafetensorsCheckpoint(tmp_path / "hf"), SafetensorsCheckpoint(world.hf_dir)
    for name in exported.names():
        tensor = exported.get(name)
        if name.startswith("visual.merger."):
            if name.endswith("ln_q.weight"):
                assert torch.equal(tensor, torch.ones_like(tensor))
            elif name.endswith(".bias"):
                assert not tensor.any()
            else:
                assert 0.015 < float(tensor.std()) < 0.025, name
        elif name.startswith("visual."):
            assert torch.equal(tensor, vision.get(name)), name
        else:
            assert torch.equal(tensor, llm_weights[name]), name
