"""megatron -> HF at every layout gives transformers' logits; HF -> megatron writes megatron's own layout, loads
in megatron-core, and comes back to HF bit for bit."""

import json

import pytest
import torch
from safetensors import safe_open
from torch.distributed.checkpoint import FileSystemReader
from transformers import Qwen2_5_VLForConditionalGeneration

from checkpoints_tools.safetensors_files import SafetensorsCheckpoint
from checkpoints_tools.to_hf import export
from megatron_vl.models.hf_mapping import from_hf
from megatron_vl.training import checkpoint_files
from tests.checkpoints_tools.conftest import LAYOUTS


def _load_hf(directory):
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, dtype=torch.float32, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.mark.parametrize("tp, pp", [(tp, pp) for tp, pp, _ in LAYOUTS])
def test_export_of_every_layout_gives_megatrons_logits(world, tp, pp, tmp_path):
    summary = export(world.megatron_roots[(tp, pp)], tmp_path / "hf", dtype="fp32", progress=False)
    assert summary["iteration"] == 1 and summary["dtype"] == "float32"
    with torch.no_grad():
        logits = _load_hf(tmp_path / "hf")(**world.document).logits[0]
    ours = world.megatron_logits[(tp, pp)]
    assert logits.shape == ours.shape
    assert (logits - ours).abs().max() <= 1e-4, f"TP={tp} PP={pp}"
    assert (logits - world.hf_logits).abs().max() <= 1e-4


def _layout(directory):
    metadata = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    return {
        key: (tuple(entry.size), entry.properties.dtype, sorted((tuple(c.offsets), tuple(c.sizes)) for c in entry.chunks))
        if hasattr(entry, "chunks") else "object"
        for key, entry in metadata.items()
    }


def test_import_writes_the_layout_megatron_saves(world):
    ours = _layout(world.imported / "iter_0000000")
    megatrons = _layout(checkpoint_files.iteration_dir(world.megatron_roots[(2, 2)], 1))
    assert ours.keys() == megatrons.keys()
    for key in megatrons:
        assert ours[key] == megatrons[key], key
    record = checkpoint_files.read_run_record(world.imported / "iter_0000000")
    assert record["written_by"] == "checkpoints_tools.from_hf"
    assert (record["parallel"]["tensor_parallel"], record["parallel"]["pipeline_parallel"]) == (2, 2)
    assert record["image_settings"]["max_pixels"] == 28 * 28 * 64
    assert checkpoint_files.resolve_checkpoint(world.imported)[1] == 0


def test_import_loads_in_megatron_at_tp2_pp2_with_the_hf_weights(world):
    expected = from_hf(world.hf.state_dict(), world.config)
    assert world.imported_loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(world.imported_loaded[name], tensor), name


def test_hf_to_megatron_to_hf_is_bit_identical(world, tmp_path):
    export(world.imported, tmp_path / "back", progress=False, max_shard_size="600KB")
    original, back = SafetensorsCheckpoint(world.hf_dir), SafetensorsCheckpoint(tmp_path / "back")
    assert sorted(back.names()) == sorted(original.names())
    assert len(list(tmp_path.glob("back/model-*.safetensors"))) > 1
    for name in original.names():
        assert back.dtype(name) == original.dtype(name)
        assert torch.equal(back.get(name), original.get(name)), name
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    some = next(iter(index["weight_map"]))
    with safe_open(tmp_path / "back" / index["weight_map"][some], "pt") as file:
        assert torch.equal(file.get_tensor(some), original.get(some))


def test_bf16_export_casts_every_tensor(world, tmp_path):
    export(world.imported, tmp_path / "bf16", dtype="bf16", progress=False)
    original, exported = SafetensorsCheckpoint(world.hf_dir), SafetensorsCheckpoint(tmp_path / "bf16")
    for name in original.names():
        assert torch.equal(exported.get(name), original.get(name).to(torch.bfloat16)), name
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_vocabulary_padded_for_tp_is_cut_on_export(world, tmp_path):
    import dataclasses

    from checkpoints_tools.dist_reader import DistCheckpointReader
    from checkpoints_tools.from_hf import ImportRequest, import_checkpoint
    from tests.models.vl_batches import hf_model

    config = dataclasses.replace(world.config, language=dataclasses.replace(world.config.language, vocab_size=4095))
    hf_model(config, seed=1).save_pretrained(tmp_path / "hf")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "hf" / name).write_bytes((world.hf_dir / name).read_bytes())
    import_checkpoint(ImportRequest(out=tmp_path / "ckpt", hf=tmp_path / "hf", tensor_parallel=2), progress=False)
    reader = DistCheckpointReader(tmp_path / "ckpt" / "iter_0000000")
    key = "language_model.output_layer.weight"
    assert reader.shape(key) == (4096, 64)
    (padding,) = reader.read([(key, ((4095, 0), (1, 64)))])
    assert not padding.any()
    export(tmp_path / "ckpt", tmp_path / "back", progress=False)
    original, back = SafetensorsCheckpoint(tmp_path / "hf"), SafetensorsCheckpoint(tmp_path / "back")
    for name in original.names():
        assert torch.equal(back.get(name), original.get(name)), name
