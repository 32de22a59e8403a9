"""Context parallelism gives the loss, the logits and every parameter's gradient (ViT, projector, LLM) of CP=1.

One spawn of four gloo ranks runs, one after another on the same micro-batches: CP=1 (four data-parallel replicas:
the reference), CP=2, CP=4, CP=2 x TP=2 with SP, CP=2 x PP=2, and CP=1 / CP=2 with a frozen ViT (stage 1). Each
layout runs a training step of four micro-batches through the real model step (``VLModelStep``: the split, the ViT
share, the per-token loss), megatron's schedule, DDP and ``finalize_model_grads`` (gradients summed over DP x CP,
divided by the loss tokens), then a forward-only pass for the logits, which every CP rank returns for its own tokens.

The micro-batches hold the cases CP exists to get right: a document shorter than 2 x CP tokens, a document that
fills its row, an image whose tokens straddle a chunk boundary, a video document, a micro-batch of text only, and
one with a single image (a CP rank with nothing to encode). Last, a distributed checkpoint saved at CP=2 loads at
CP=1 and at TP=2 x CP=2 with the same weights, bit for bit. Documents are padded to a multiple of 8 (2 x CP for
CP=4) inside their segments, as the loaders pad them; CP=1 runs the same padded micro-batches, and one unpadded
run checks that the padding changes nothing.

Measured (fp32): loss differences about 1e-7 relative, gradients within 1e-6 absolute and 1e-4 relative.
"""

from __future__ import annotations

import pytest
import torch

from tests.models.vl_batches import Video, build_model, document, hf_model, micro_batch, tiny_config
from tests.multirank import run_ranks

SEQ, ROWS, ALIGNMENT = 64, 2, 8
LAYOUTS = {
    "CP=2": dict(context_parallel=2),
    "CP=4": dict(context_parallel=4),
    "CP=2 TP=2 SP": dict(context_parallel=2, tensor_parallel=2, sequence_parallel=True),
    "CP=2 PP=2": dict(context_parallel=2, pipeline_parallel=2, first_pipeline_stage_language_layers=1),
}
FROZEN_VIT = {"vision": True, "projector": False, "language": False}
TRAINED = {"vision": False, "projector": False, "language": False}


def _rows(hf) -> list[list[list]]:
    generator = torch.Generator().manual_seed(5)
    # 5 text tokens, vision start, 24 image tokens (a 1 x 8 x 12 grid), vision end, 3 text: the image's tokens run
    # from 6 to 29 of a 40-token document, across the boundaries of its 5-token chunks (CP=4) and 10-token (CP=2).
    straddling = document(hf, generator, [5, 3], [(1, 8, 12)])
    short = document(hf, generator, [3], [])
    video = document(hf, generator, [2, 3], [Video((2, 4, 4), 0.5)])
    filling = document(hf, generator, [SEQ], [])
    small_image = document(hf, generator, [2, 2], [(1, 4, 4)])
    return [
        [[straddling, short], [video]],
        [[filling], [small_image, short]],
        [[document(hf, generator, [20], []), short], [document(hf, generator, [30], [])]],
        [[small_image], [document(hf, generator, [9], [])]],
    ]


def _as_vl_batch(batch: dict):
    from megatron_vl.data.batch import VLBatch

    lengths = (batch["cu_seqlens"][1:] - batch["cu_seqlens"][:-1]).tolist()
    empty = torch.zeros(0, batch["pixel_values"].shape[1] if batch["pixel_values"] is not None else 1176)
    return VLBatch(
        tokens=batch["input_ids"], labels=batch["labels"], loss_mask=batch["loss_mask"],
        position_ids=batch["position_ids"], cu_seqlens=batch["cu_seqlens"], max_seqlen=max(lengths),
        pixel_values=batch["pixel_values"] if batch["pixel_values"] is not None else empty,
        image_grid_thw=batch["image_grid_thw"] if batch["image_grid_thw"] is not None else torch.zeros(0, 3, dtype=torch.long),
        pixel_values_videos=batch["pixel_values_videos"] if batch["pixel_values_videos"] is not None else empty,
        video_grid_thw=batch["video_grid_thw"] if batch["video_grid_thw"] is not None else torch.zeros(0, 3, dtype=torch.long),
        second_per_grid_ts=torch.zeros(0), loss_tokens_per_kind={"text": int(batch["loss_mask"].sum())},
        sample_ids=[(0, 0)] * batch["input_ids"].shape[0],
    )


def _run_layout(parallel, full, batches, frozen) -> dict:
    """One training step over ``batches`` and a forward-only pass over them: the step's loss sum and token count,
    the full gradients, and this rank's logits with the global positions of its tokens (last stage only)."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    from megatron_vl.models.sharding import gather_full_state_dict, global_name
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.training.context_split import context_split
    from megatron_vl.training.model_step import VLModelStep

    config = tiny_config()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    model = build_model(config, parallel, pgs, full)
    model.freeze(**frozen)
    model.config.calculate_per_token_loss = True
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(), model, pg_collection=pgs)
    ddp.zero_grad_buffer()
    step = VLModelStep(config, frozen, torch.device("cpu"), cp_group=pgs.cp)
    vl_batches = [_as_vl_batch(batch) for batch in batches]
    schedule_kwargs = {}
    if parallel.pipeline_parallel > 1:
        schedule_kwargs["p2p_communicator"] = P2PCommunicator(pgs.pp, model.config)
    schedule = get_forward_backward_func(pp_size=parallel.pipeline_parallel)
    common = dict(model=[ddp], num_microbatches=len(batches), seq_length=ROWS * SEQ,
                  micro_batch_size=1, pg_collection=pgs, **schedule_kwargs)
    outputs = schedule(forward_step_func=step.train_forward, data_iterator=iter(vl_batches), forward_only=False, **common)
    num_tokens = torch.tensor(sum(int(entry["loss"][1]) for entry in outputs), dtype=torch.int64)
    finalize_model_grads([ddp], pg_collection=pgs, num_tokens=num_tokens)
    totals = sum((entry["loss"] for entry in outputs), torch.zeros(2))
    trained = {global_name(model, name) for name, param in model.named_parameters() if param.requires_grad}
    grads = gather_full_state_dict(model, lambda param: param.main_grad if param.requires_grad else param.detach())
    grads = {name: grad for name, grad in grads.items() if name in trained}

    def logits_step(data_iterator, model):
        batch = next(data_iterator)
        shard, share = context_split(config, pgs.cp, tokens=batch.tokens, cu_seqlens=batch.cu_seqlens,
                                     image_grid_thw=batch.image_grid_thw, video_grid_thw=batch.video_grid_thw)
        logits = model(batch.tokens, batch.position_ids, pixel_values=batch.pixel_values,
                       image_grid_thw=batch.image_grid_thw, pixel_values_videos=batch.pixel_values_videos,
                       video_grid_thw=batch.video_grid_thw, cu_seqlens=batch.cu_seqlens, labels=None,
                       context_shard=shard, vision_share=share)
        where = shard.indices if shard is not None else torch.arange(batch.tokens.numel())
        return logits, lambda output, non_loss_data: (where, output.reshape(-1, output.shape[-1]))

    with torch.no_grad():
        logits = schedule(forward_step_func=logits_step, data_iterator=iter(vl_batches), forward_only=True,
                          collect_non_loss_data=True, **common)
    return {"loss": totals, "grads": grads, "logits": logits or None}


def _checkpoint_round_trip(full, directory) -> dict[str, bool]:
    """A distributed checkpoint saved at CP=2 loaded at CP=1 and at TP=2 x CP=2: are the weights bit for bit
    the saved ones?"""
    from megatron.core import dist_checkpointing

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.sharding import gather_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    saved_at = ParallelConfig(context_parallel=2)
    saved = build_model(tiny_config(), saved_at, initialize_model_parallel(saved_at), full)
    dist_checkpointing.save(saved.sharded_state_dict(), directory)
    equal = {}
    for name, layout in (("CP=1", ParallelConfig()), ("TP=2 x CP=2", ParallelConfig(tensor_parallel=2, context_parallel=2))):
        pgs = initialize_model_parallel(layout)
        set_seed(99, pgs)
        loaded = build_model(tiny_config(), layout, pgs)
        loaded.load_state_dict(dist_checkpointing.load(loaded.sharded_state_dict(), directory))
        weights = gather_full_state_dict(loaded)
        equal[name] = weights.keys() == full.keys() and all(torch.equal(weights[key], full[key]) for key in full)
    return equal


def _all_layouts(checkpoint_dir) -> dict:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.hf_mapping import from_hf

    config = tiny_config()
    hf = hf_model(config)
    full = from_hf(hf.state_dict(), config)
    rows = _rows(hf)
    aligned = [micro_batch(batch, seq_len=SEQ, document_alignment=ALIGNMENT) for batch in rows]
    results = {
        "CP=1": _run_layout(ParallelConfig(), full, aligned, TRAINED),
        "CP=1 unpadded": _run_layout(ParallelConfig(), full, [micro_batch(batch, seq_len=SEQ) for batch in rows], TRAINED),
        "CP=1 frozen ViT": _run_layout(ParallelConfig(), full, aligned, FROZEN_VIT),
        "CP=2 frozen ViT": _run_layout(ParallelConfig(context_parallel=2), full, aligned, FROZEN_VIT),
    }
    for name, layout in LAYOUTS.items():
        results[name] = _run_layout(ParallelConfig(**layout), full, aligned, TRAINED)
    results["cu_seqlens"] = [batch["cu_seqlens"] for batch in aligned]
    results["checkpoint"] = _checkpoint_round_trip(full, checkpoint_dir)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_all_layouts, 4, str(tmp_path_factory.mktemp("cp2_checkpoint")))


def _mean_loss(ranks, layout) -> float:
    """The step's mean loss over its loss tokens: the sums of every rank's own tokens (TP ranks and data-parallel
    replicas repeat the same sums, which the mean cancels; only last pipeline stages have any)."""
    totals = sum(rank[layout]["loss"] for rank in ranks)
    return float(totals[0] / totals[1])


def _grads(ranks, layout) -> dict:
    merged = {}
    for rank in ranks:
        merged.update(rank[layout]["grads"])
    return merged


def _logits(ranks, layout) -> list[torch.Tensor]:
    """Each micro-batch's logits [b * s, vocab] put together from the tokens every rank holds."""
    cu_seqlens = ranks[0]["cu_seqlens"]
    full = [None] * len(cu_seqlens)
    for rank in ranks:
        for index, (where, logits) in enumerate(rank[layout]["logits"] or []):
            if full[index] is None:
                full[index] = torch.full((int(cu_seqlens[index][-1]), logits.shape[-1]), float("nan"))
            full[index][where] = logits
    return full


def _assert_gradients_equal(grads, reference, where):
    assert grads.keys() == reference.keys(), where
    for name, expected in reference.items():
        assert expected.abs().max() > 0, f"{name} got no gradient at CP=1"
        torch.testing.assert_close(grads[name], expected, atol=1e-6, rtol=1e-4, msg=f"{name} at {where}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_gives_the_loss_gradients_and_logits_of_cp1(ranks, layout):
    assert abs(_mean_loss(ranks, layout) - _mean_loss(ranks, "CP=1")) <= 1e-6 * _mean_loss(ranks, "CP=1")
    reference = _grads(ranks, "CP=1")
    assert any(name.startswith("vision_model.") for name in reference)
    _assert_gradients_equal(_grads(ranks, layout), reference, layout)
    for index, (logits, expected) in enumerate(zip(_logits(ranks, layout), _logits(ranks, "CP=1"))):
        assert not logits.isnan().any(), f"micro-batch {index}: some token has no logits at {layout}"
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5, msg=f"micro-batch {index} at {layout}")


def test_each_cp_rank_computes_the_loss_of_its_own_tokens_only(ranks):
    counts = [int(rank["CP=2"]["loss"][1]) for rank in ranks]
    whole = int(ranks[0]["CP=1"]["loss"][1])
    assert 0 < counts[0] < whole and counts[0] + counts[1] == whole


def test_a_frozen_vit_under_cp_gives_the_projector_and_llm_gradients_of_cp1(ranks):
    reference = _grads(ranks, "CP=1 frozen ViT")
    assert not any(name.startswith("vision_model.") for name in reference)
    assert any(name.startswith("vision_projection.") for name in reference)
    assert abs(_mean_loss(ranks, "CP=2 frozen ViT") - _mean_loss(ranks, "CP=1 frozen ViT")) <= 1e-6
    _assert_gradients_equal(_grads(ranks, "CP=2 frozen ViT"), reference, "CP=2 frozen ViT")


def test_padding_documents_to_the_alignment_changes_neither_loss_nor_gradients(ranks):
    assert abs(_mean_loss(ranks, "CP=1 unpadded") - _mean_loss(ranks, "CP=1")) <= 1e-6 * _mean_loss(ranks, "CP=1")
    _assert_gradients_equal(_grads(ranks, "CP=1 unpadded"), _grads(ranks, "CP=1"), "unpadded")


def test_a_checkpoint_saved_at_cp2_loads_bit_for_bit_at_cp1_and_at_tp2_cp2(ranks):
    for rank in ranks:
        assert rank["checkpoint"] == {"CP=1": True, "TP=2 x CP=2": True}
