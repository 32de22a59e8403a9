"""Checkpoints do not depend on the layer backend: Transformer Engine's key set (an ``_extra_state`` on every norm
and core attention, where the local modules have none) loads a local checkpoint and a ``from_hf`` one, and the
local key set loads a TE checkpoint, each with every weight intact.

TE does not run on the CPU, so its key set is made by giving the local norm and core attention an extra state,
which is all that differs in a checkpoint.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from tests.models.vl_batches import hf_model, tiny_config
from tests.multirank import run_ranks

CORPUS = ["A red circle at the top left and a blue square at the bottom right.", "What is 47 + 38? It is 85."] * 50


@contextlib.contextmanager
def transformer_engine_key_set():
    """Norms and core attention carry an extra state, as Transformer Engine's modules do."""
    from megatron_vl.models.norm import RMSNorm
    from megatron_vl.models.packed_attention import PackedDotProductAttention

    classes = (RMSNorm, PackedDotProductAttention)
    for cls in classes:
        cls.get_extra_state = lambda self: io.BytesIO(b"fp8 metadata")
        cls.set_extra_state = lambda self, state: setattr(self, "loaded_extra_state", state)
    try:
        yield
    finally:
        for cls in classes:
            del cls.get_extra_state, cls.set_extra_state


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _save(model, directory: str) -> None:
    import os

    from megatron.core import dist_checkpointing

    os.makedirs(directory)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, directory)


def _load(model, directory: str) -> None:
    from megatron_vl.training.checkpoint_loading import load_checkpoint, load_model_state

    loaded = load_checkpoint({"model": model.sharded_state_dict()}, directory)
    load_model_state(model, loaded["model"])


def _across_key_sets(root: str, imported: str) -> dict:
    import os

    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.sharding import gather_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from tests.models.vl_batches import build_model

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    config = tiny_config()

    def fresh_model(seed: int):
        set_seed(seed, pgs)
        return build_model(config, parallel, pgs)

    local_dir, te_dir = os.path.join(root, "local"), os.path.join(root, "te")
    written_local = fresh_model(1)
    _save(written_local, local_dir)
    results = {}
    with transformer_engine_key_set():
        te_model = fresh_model(2)
        extra_states = [key for key in te_model.sharded_state_dict() if key.endswith("_extra_state")]
        results["te norms and attention have extra state"] = (
            any("layernorm._extra_state" in key for key in extra_states)
            and any("core_attention._extra_state" in key for key in extra_states)
        )
        try:
            dist_checkpointing.load({"model": te_model.sharded_state_dict()}, local_dir)
            results["megatron's own load fails"] = False
        except CheckpointException:
            results["megatron's own load fails"] = True
        _load(te_model, local_dir)
        results["te from local"] = (_weights(te_model), _weights(written_local))
        _save(te_model, te_dir)
        from_hf_model = fresh_model(3)
        _load(from_hf_model, imported)
        results["te from from_hf"] = gather_full_state_dict(from_hf_model)
    local_model = fresh_model(4)
    _load(local_model, te_dir)
    results["local from te"] = (_weights(local_model), _weights(te_model))
    return results


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from checkpoints_tools.from_hf import ImportRequest, import_checkpoint
    from megatron_vl.models.hf_mapping import from_hf
    from megatron_vl.tokenizer import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("key_sets")
    config = tiny_config()
    hf = hf_model(config)
    hf.save_pretrained(root / "hf")
    train_bpe_tokenizer(CORPUS, 400).save_hf(str(root / "hf"))
    import_checkpoint(ImportRequest(out=root / "imported", hf=root / "hf"), progress=False)
    results = run_ranks(_across_key_sets, 1, str(root), str(root / "imported" / "iter_0000000"))[0]
    return results, from_hf(hf.state_dict(), config)


def _assert_same(weights: tuple[dict, dict]) -> None:
    got, expected = weights
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_the_key_sets_differ_and_megatron_alone_refuses_a_local_checkpoint_under_te(loaded):
    results, _ = loaded
    assert results["te norms and attention have extra state"]
    assert results["megatron's own load fails"]


def test_te_key_set_loads_a_local_checkpoint(loaded):
    _assert_same(loaded[0]["te from local"])


def test_local_key_set_loads_a_te_checkpoint(loaded):
    _assert_same(loaded[0]["local from te"])


def test_te_key_set_loads_from_hf_output(loaded):
    results, expected = loaded
    _assert_same((results["te from from_hf"], expected))
