"""TP=2, TP=2 with SP, and PP=2 (1F1B, uneven first stage) give the loss and gradients of TP=1 PP=1 on
micro-batches of images and videos, every layout's logits equal HF Qwen2.5-VL's on a document with an image and
a video and on one with a video, and a distributed checkpoint saved at TP=2 loads at TP=1 with identical logits.

All layouts run one after another in one spawn of two gloo ranks (at TP=1 PP=1 the two ranks are data
parallel replicas on the same batches). Gradients go through megatron's DDP and ``finalize_model_grads``
(which sums the sequence-parallel norm and bias gradients over TP) and are gathered to full tensors.
"""

import pytest
import torch

from tests.models.vl_batches import Video, build_model, document, hf_model, micro_batch, model_inputs, tiny_config
from tests.multirank import run_ranks

SEQ, ROWS, MICRO_BATCHES = 32, 2, 4
# PP puts 1 of the 4 LLM layers beside the ViT on the first stage.
LAYOUTS = {
    "TP=2": dict(tensor_parallel=2),
    "TP=2 SP": dict(tensor_parallel=2, sequence_parallel=True),
    "PP=2": dict(pipeline_parallel=2, first_pipeline_stage_language_layers=1),
}


def _micro_batches(hf) -> list[dict]:
    generator = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(MICRO_BATCHES):
        with_image = document(hf, generator, [3, 4], [(1, 6, 10)])
        text = document(hf, generator, [5], [])
        image_and_video = document(hf, generator, [2, 2, 1], [(1, 4, 8), Video((2, 4, 4), 0.5)])
        batches.append(micro_batch([[with_image, text], [image_and_video]], seq_len=SEQ))
    return batches


def _hf_compared_documents(hf) -> list:
    """The documents each layout's logits are compared with HF's on: an image and an odd-length video, a video."""
    generator = torch.Generator().manual_seed(4)
    return [
        document(hf, generator, [3, 2, 2], [(1, 6, 10), Video((3, 4, 6), 1.0)]),
        document(hf, generator, [2, 3], [Video((2, 6, 8), 0.5)]),
    ]


def _run_layout(config, parallel, full, batches, logits_batch) -> tuple[float | None, dict, torch.Tensor | None]:
    """Loss and full gradients of one training step over ``batches``, and the logits of ``logits_batch`` (forward
    only, same weights); the loss and logits on the last pipeline stage only, None elsewhere."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    from megatron_vl.models.sharding import gather_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    model = build_model(config, parallel, pgs, full)
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(), model, pg_collection=pgs)
    ddp.zero_grad_buffer()

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        output = model(**model_inputs(batch))

        def loss_func(per_token_loss):
            total = (per_token_loss * batch["loss_mask"]).sum()
            return total / (MICRO_BATCHES * ROWS * SEQ), torch.tensor(1), {"loss": total.detach()}

        return output, loss_func

    schedule_kwargs = {}
    if parallel.pipeline_parallel > 1:
        schedule_kwargs["p2p_communicator"] = P2PCommunicator(pgs.pp, model.config)
    schedule = get_forward_backward_func(pp_size=parallel.pipeline_parallel)
    losses = schedule(
        forward_step_func=forward_step,
        data_iterator=iter(batches),
        model=[ddp],
        num_microbatches=MICRO_BATCHES,
        seq_length=ROWS * SEQ,
        micro_batch_size=1,
        forward_only=False,
        pg_collection=pgs,
        **schedule_kwargs,
    )
    finalize_model_grads([ddp], pg_collection=pgs)
    loss = sum(float(entry["loss"]) for entry in losses) if losses else None
    grads = gather_full_state_dict(model, lambda param: param.main_grad)

    def logits_step(data_iterator, model):
        # With collect_non_loss_data the last stage's "loss function" output is returned as is: the logits.
        return model(**{**model_inputs(next(data_iterator)), "labels": None}), lambda logits, non_loss_data: logits

    rows, seq = logits_batch["input_ids"].shape
    with torch.no_grad():
        logits = schedule(
            forward_step_func=logits_step,
            data_iterator=iter([logits_batch]),
            model=[ddp],
            num_microbatches=1,
            seq_length=rows * seq,
            micro_batch_size=1,
            forward_only=True,
            collect_non_loss_data=True,
            pg_collection=pgs,
            **schedule_kwargs,
        )
    return loss, grads, logits[0] if logits else None


def _checkpoint_logits(config, full, batch, directory) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a TP=1 model loaded from a checkpoint saved at TP=2, and of the TP=1 model built directly."""
    from megatron.core import dist_checkpointing

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    tp2 = ParallelConfig(tensor_parallel=2)
    saved = build_model(config, tp2, initialize_model_parallel(tp2), full)
    dist_checkpointing.save(saved.sharded_state_dict(), directory)

    tp1 = ParallelConfig()
    pgs = initialize_model_parallel(tp1)
    set_seed(99, pgs)
    loaded = build_model(config, tp1, pgs)
    loaded.load_state_dict(dist_checkpointing.load(loaded.sharded_state_dict(), directory))
    direct = build_model(config, tp1, pgs, full)
    inputs = {**model_inputs(batch), "labels": None}
    with torch.no_grad():
        return loaded.eval()(**inputs), direct.eval()(**inputs)


def _all_layouts(checkpoint_dir) -> dict:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.hf_mapping import from_hf

    config = tiny_config()
    hf = hf_model(config)
    full = from_hf(hf.state_dict(), config)
    batches = _micro_batches(hf)
    compared = _hf_compared_documents(hf)
    longest = max(len(doc.ids) for doc in compared)
    # Sequence parallelism splits the micro-batch's tokens over the 2 TP ranks.
    logits_batch = micro_batch([[doc] for doc in compared], seq_len=longest + longest % 2)
    with torch.no_grad():
        results = {"HF logits": [hf(**doc.hf_inputs()).logits[0] for doc in compared]}
    results["TP=1"] = _run_layout(config, ParallelConfig(), full, batches, logits_batch)
    for name, layout in LAYOUTS.items():
        results[name] = _run_layout(tiny_config(), ParallelConfig(**layout), full, batches, logits_batch)
    results["checkpoint"] = _checkpoint_logits(config, full, batches[0], checkpoint_dir)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_all_layouts, 2, str(tmp_path_factory.mktemp("tp2_checkpoint")))


def _merged(ranks, layout):
    loss = next(rank[layout][0] for rank in ranks if rank[layout][0] is not None)
    grads = {}
    for rank in ranks:
        grads.update(rank[layout][1])
    return loss, grads


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_gives_single_rank_loss_and_gradients(ranks, layout):
    reference_loss, reference_grads = _merged(ranks, "TP=1")
    loss, grads = _merged(ranks, layout)
    assert abs(loss - reference_loss) <= 1e-5 * abs(reference_loss), (loss, reference_loss)
    assert grads.keys() == reference_grads.keys()
    assert any(name.startswith("vision_model.") for name in grads)
    for name, reference in reference_grads.items():
        assert reference.abs().max() > 0, f"{name} got no gradient at TP=1"
        torch.testing.assert_close(grads[name], reference, atol=1e-6, rtol=1e-4, msg=f"{name} at {layout}")


@pytest.mark.parametrize("layout", ["TP=1", *LAYOUTS])
def test_layout_logits_equal_hf_on_documents_with_images_and_videos(ranks, layout):
    logits = next(rank[layout][2] for rank in ranks if rank[layout][2] is not None)
    for row, hf_logits in enumerate(ranks[0]["HF logits"]):
        ours = logits[row, : hf_logits.shape[0]]
        assert ours.shape == hf_logits.shape
        assert (ours - hf_logits).abs().max() <= 1e-4, f"document {row} at {layout}"


def test_checkpoint_saved_at_tp2_loads_at_tp1_with_identical_logits(ranks):
    for rank in ranks:
        loaded, direct = rank["checkpoint"]
        assert torch.equal(loaded, direct)
