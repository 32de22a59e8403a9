"""VLModel on one rank: logits and visual features equal HF's (images, videos, and both in one document), packed
documents equal documents alone, freezing trains only the projector, and bad inputs raise ``ValueError``.

Everything runs in one spawned rank (module fixture); each test checks one part of what it returned.
"""

import pytest
import torch

from tests.models.vl_batches import (
    IMAGE,
    VIDEO,
    Video,
    build_model,
    document,
    hf_model,
    micro_batch,
    model_inputs,
    tiny_config,
)
from tests.multirank import run_ranks

TWO_IMAGES = [(1, 10, 16), (1, 6, 12)]  # 5x8 and 3x6 merged patches: both leave partial 4x4 windows
# Odd temporal patches (3) and several windows per frame (5x8 merged patches), at two frame rates.
VIDEO_ONLY = [Video((3, 4, 6), 1.0)]
IMAGE_AND_VIDEOS = [(1, 6, 10), Video((2, 10, 16), 0.5), Video((3, 4, 6), 1.0)]


def _input_errors(model, doc, video) -> dict[str, str]:
    """The ``ValueError`` message of each malformed input."""
    cases = {
        "placeholders": lambda: model(
            doc.ids[None, :-3], doc.positions[:, None, :-3], pixel_values=doc.pixel_values[:4], image_grid_thw=torch.tensor([[1, 2, 2]])
        ),
        "cu_seqlens": lambda: model(
            torch.cat([doc.ids, doc.ids])[None].view(2, -1),
            torch.cat([doc.positions, doc.positions], dim=1)[:, None].view(3, 2, -1),
            pixel_values=torch.cat([doc.pixel_values, doc.pixel_values]),
            image_grid_thw=torch.cat([doc.grids, doc.grids]),
            cu_seqlens=torch.tensor([0, 2 * len(doc.ids)]),
        ),
        "pixels": lambda: model(doc.ids[None], doc.positions[:, None], pixel_values=doc.pixel_values[1:], image_grid_thw=doc.grids),
        "no video pixels": lambda: model(**{**video.model_inputs(), "pixel_values_videos": None}),
        "video placeholders": lambda: model(**{
            **video.model_inputs(), "pixel_values_videos": video.pixel_values_videos[:48],
            "video_grid_thw": torch.tensor([[3, 4, 4]]),
        }),
        "video pixels": lambda: model(**{**video.model_inputs(), "pixel_values_videos": video.pixel_values_videos[1:]}),
        "video grid": lambda: model(**{**video.model_inputs(), "video_grid_thw": None}),
    }
    messages = {}
    for name, call in cases.items():
        try:
            call()
        except ValueError as error:
            messages[name] = str(error)
    return messages


def _freeze_step(config, parallel, pgs, full, batch) -> dict:
    """One Adam step with the ViT and the LLM frozen, through megatron's DDP and optimizer.

    Gradient clipping is off: megatron's clipping asserts CUDA tensor types, which the CPU emulation lacks.
    """
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    model = build_model(config, parallel, pgs, full)
    model.freeze(vision=True, projector=False, language=True)
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(), model, pg_collection=pgs)
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=1e-2, params_dtype=torch.float32, clip_grad=0.0), [ddp], use_gloo_process_groups=False, pg_collection=pgs
    )
    names = {param: name for name, param in model.named_parameters()}
    buffered = sorted(names[param] for buffer in ddp.buffers for param in buffer.params)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    vit_grad_enabled = []
    model.vision_model.register_forward_hook(lambda *_: vit_grad_enabled.append(torch.is_grad_enabled()))
    ddp.zero_grad_buffer()
    optimizer.zero_grad()
    mask = batch["loss_mask"]
    loss = (model(**model_inputs(batch)) * mask).sum() / mask.sum()
    loss.backward()
    finalize_model_grads([ddp], pg_collection=pgs)
    updated, _, _ = optimizer.step()
    assert updated
    changed = sorted(name for name, param in model.named_parameters() if not torch.equal(before[name], param))
    return {"buffered": buffered, "changed": changed, "all": sorted(before), "vit_grad_enabled": vit_grad_enabled}


def _text_only_steps(config, parallel, pgs, full, image_batch, text_batch) -> dict:
    """Two steps under megatron's DDP with overlap_grad_reduce: images, then text only. The second step
    must still hand every trained parameter a gradient, or DDP's gradient sync refuses to finish."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads

    model = build_model(config, parallel, pgs, full)
    ddp = DistributedDataParallel(
        model.config, DistributedDataParallelConfig(overlap_grad_reduce=True), model, pg_collection=pgs
    )
    for batch in (image_batch, text_batch):
        ddp.zero_grad_buffer()
        mask = batch["loss_mask"]
        ((ddp(**model_inputs(batch)) * mask).sum() / mask.sum()).backward()
        finalize_model_grads([ddp], pg_collection=pgs)
    grads = {name: param.main_grad.clone() for name, param in model.named_parameters()}
    return {
        "vision grads are zero": all(not g.any() for n, g in grads.items() if n.startswith("vision_model.")),
        "language grads are not": all(g.any() for n, g in grads.items() if n.startswith("language_model.decoder")),
    }


def _single_rank_checks() -> dict:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models.hf_mapping import from_hf
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = tiny_config()
    hf = hf_model(config)
    full = from_hf(hf.state_dict(), config)
    model = build_model(config, parallel, pgs, full).eval()
    generator = torch.Generator().manual_seed(1)
    results = {}

    doc = document(hf, generator, [3, 5, 20], TWO_IMAGES)
    video_generator = torch.Generator().manual_seed(2)
    video = document(hf, video_generator, [4, 6], VIDEO_ONLY)
    mixed = document(hf, video_generator, [3, 2, 5, 4], IMAGE_AND_VIDEOS)
    with torch.no_grad():
        hf_logits = hf(
            input_ids=doc.ids[None], position_ids=doc.positions[:, None], pixel_values=doc.pixel_values, image_grid_thw=doc.grids
        ).logits[0]
        logits = model(doc.ids[None], doc.positions[:, None], pixel_values=doc.pixel_values, image_grid_thw=doc.grids)[0]
        results["logits"] = (logits, hf_logits)
        results["visual"] = (
            model.encode_vision(doc.pixel_values, doc.grids),
            hf.model.visual(doc.pixel_values, grid_thw=doc.grids).pooler_output,
        )
        results["video logits"] = {
            name: (model(**d.model_inputs())[0], hf(**d.hf_inputs()).logits[0])
            for name, d in (("video", video), ("image and videos", mixed))
        }
        results["visual of videos"] = (
            model.encode_vision(mixed.pixel_values_videos, mixed.video_grids),
            hf.model.visual(mixed.pixel_values_videos, grid_thw=mixed.video_grids).pooler_output,
        )

        first = document(hf, generator, [4, 9], [(1, 6, 10)])
        second = document(hf, generator, [2, 6], [(1, 4, 8)])
        alone = [
            model(d.ids[None], d.positions[:, None], pixel_values=d.pixel_values, image_grid_thw=d.grids)[0]
            for d in (first, second)
        ]
        batch = micro_batch([[first, second], [second]], seq_len=len(first.ids) + len(second.ids) + 3)
        packed = model(**{**model_inputs(batch), "labels": None})
        results["packing"] = {
            "row 0, first document": (packed[0, : len(first.ids)], alone[0]),
            "row 0, second document": (packed[0, len(first.ids) : len(first.ids) + len(second.ids)], alone[1]),
            "row 1, second document": (packed[1, : len(second.ids)], alone[1]),
        }
        results["errors"] = _input_errors(model, doc, video)
    results["freeze"] = _freeze_step(config, parallel, pgs, full, batch)
    text_batch = micro_batch([[document(hf, generator, [20], [])], [document(hf, generator, [12], [])]], seq_len=24)
    results["text only"] = _text_only_steps(config, parallel, pgs, full, batch, text_batch)
    return results


@pytest.fixture(scope="module")
def single_rank():
    return run_ranks(_single_rank_checks, 1)[0]


def test_logits_equal_hf_with_two_images_between_text(single_rank):
    logits, hf_logits = single_rank["logits"]
    assert logits.shape == hf_logits.shape
    assert (logits - hf_logits).abs().max() <= 1e-4


def test_vit_and_projector_equal_hf_visual(single_rank):
    ours, theirs = single_rank["visual"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_logits_equal_hf_with_a_video_and_with_an_image_and_videos_in_one_document(single_rank):
    for name, (logits, hf_logits) in single_rank["video logits"].items():
        assert logits.shape == hf_logits.shape, name
        assert (logits - hf_logits).abs().max() <= 1e-4, name


def test_vit_and_projector_equal_hf_visual_on_videos(single_rank):
    ours, theirs = single_rank["visual of videos"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_packed_documents_give_the_logits_of_each_document_alone(single_rank):
    for where, (packed, alone) in single_rank["packing"].items():
        torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5, msg=where)


def test_frozen_vit_and_llm_step_changes_only_the_projector(single_rank):
    freeze = single_rank["freeze"]
    projector = [name for name in freeze["all"] if name.startswith("vision_projection.")]
    assert freeze["buffered"] == projector, "frozen parameters must get no gradient buffer"
    assert freeze["changed"] == projector
    assert freeze["vit_grad_enabled"] == [False], "a frozen ViT runs without autograd"


def test_malformed_inputs_raise_value_errors(single_rank):
    errors = single_rank["errors"]
    assert "placeholders" in errors["placeholders"] and str(IMAGE) in errors["placeholders"]
    assert "row boundary" in errors["cu_seqlens"]
    assert "pixel_values has shape" in errors["pixels"]
    assert f"18 video placeholder tokens (id {VIDEO}) but no pixel_values_videos" in errors["no video pixels"]
    assert f"the videos give 12 video tokens but input_ids has 18 placeholders (id {VIDEO})" in errors["video placeholders"]
    assert "pixel_values_videos has shape (71, 1176) but video_grid_thw describes 72 patches" in errors["video pixels"]
    assert "pixel_values_videos were given without video_grid_thw" in errors["video grid"]


def test_text_only_micro_batch_after_images_finishes_overlapped_grad_sync(single_rank):
    assert single_rank["text only"] == {"vision grads are zero": True, "language grads are not": True}
