"""On two or more GPUs: Transformer Engine's context-parallel attention (CP=2, ``p2p``, THD with
``cu_seqlens_*_padded``) against the local layers at CP=1, on the same weights and packed micro-batch (a video, an
image across chunk boundaries, a document shorter than 2 x CP): the logits of every token, in bf16 against the fp32
reference (``BF16_LOGITS_RTOL``). Skipped, with the reason, where fewer than two GPUs or no TE are
(the lent machine has one GPU); the CPU suite's ``tests/models/test_context_parallel.py`` checks the local CP path."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.gpu_setup import (
    BF16_LOGITS_RTOL,
    TEST_DEVICE,
    platform_for,
    relative_error,
    strict_fp32,
    to_device,
    transformer_engine_error,
)
from tests.models.vl_batches import Video, document, hf_model, micro_batch, model_inputs, tiny_config
from tests.multirank import run_ranks

SEQ, ALIGNMENT = 96, 4


def _why_not_here() -> str | None:
    if TEST_DEVICE != "cuda":
        return "CP on Transformer Engine needs GPUs; the tests run on the CPU"
    count = torch.cuda.device_count()
    if count < 2:
        return f"CP=2 needs 2 GPUs, this machine has {count}"
    error = transformer_engine_error()
    return None if error is None else f"Transformer Engine does not import here: {error}"


def _rows(hf):
    generator = torch.Generator().manual_seed(3)
    straddling = document(hf, generator, [5, 3], [(1, 8, 12)])
    video = document(hf, generator, [2, 3], [Video((2, 4, 4), 0.5)])
    short = document(hf, generator, [2], [])
    return [[straddling, short], [video, document(hf, generator, [30], [])]]


def _logits(parallel, backend: str, dtype: str, full: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's logits (float32) and the global indices of its tokens."""
    from megatron_vl.models import VLModel
    from megatron_vl.models.sharding import load_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.training.context_split import context_split

    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = tiny_config(dtype=dtype)
    model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform_for(backend))
    load_full_state_dict(model, full)
    inputs = model_inputs(batch)
    shard, share = context_split(config, pgs.cp, tokens=inputs["input_ids"], cu_seqlens=inputs["cu_seqlens"],
                                 image_grid_thw=inputs["image_grid_thw"], video_grid_thw=inputs["video_grid_thw"])
    with torch.no_grad():
        logits = model(**{**inputs, "labels": None}, context_shard=shard, vision_share=share)
    where = shard.indices.cpu() if shard is not None else torch.arange(batch["input_ids"].numel())
    return logits.reshape(-1, logits.shape[-1]).float().cpu(), where


def _te_cp2_and_local_cp1() -> dict:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.hf_mapping import from_hf

    strict_fp32()
    hf = hf_model(tiny_config())
    full = from_hf(hf.state_dict(), tiny_config())
    batch = to_device(micro_batch(_rows(hf), seq_len=SEQ, document_alignment=ALIGNMENT), TEST_DEVICE)
    reference, _ = _logits(ParallelConfig(), "local", "float32", full, batch)
    sharded, where = _logits(ParallelConfig(context_parallel=2), "transformer_engine", "bfloat16", full, batch)
    return {"reference": reference, "sharded": sharded, "where": where}


def test_te_cp2_in_bf16_gives_the_logits_of_local_cp1():
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)
    ranks = run_ranks(_te_cp2_and_local_cp1, 2)
    reference = ranks[0]["reference"]
    put_together = torch.full_like(reference, float("nan"))
    for rank in ranks:
        put_together[rank["where"]] = rank["sharded"]
    assert not put_together.isnan().any(), "some token has no logits at CP=2"
    assert relative_error(put_together, reference) <= BF16_LOGITS_RTOL
