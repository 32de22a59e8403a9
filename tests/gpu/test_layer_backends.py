"""On the GPU: Transformer Engine's layers against megatron-core's local ones on identical weights (logits and
every parameter's gradient, fp32 and bf16), packed THD documents (with images, an image and a video, text)
against the same documents one by one, and the exported Hugging Face model against ours. Tolerances: ``tests/gpu/gpu_setup.py``."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.gpu_setup import (
    BF16_GRADIENT_RTOL,
    BF16_LOGITS_RTOL,
    FP32_GRADIENT_RTOL,
    FP32_LOGITS_ATOL,
    TEST_DEVICE,
    layer_backends,
    platform_for,
    relative_error,
    strict_fp32,
    to_device,
    transformer_engine_error,
)
from tests.models.vl_batches import Video, document, hf_model, micro_batch, model_inputs, tiny_config
from tests.multirank import run_ranks

DTYPES = ("float32", "bfloat16")


def _documents(hf):
    generator = torch.Generator().manual_seed(1)
    first = document(hf, generator, [4, 9], [(1, 6, 10)])
    second = document(hf, generator, [2, 3, 3], [(1, 4, 8), Video((3, 4, 4), 0.5)])
    text = document(hf, generator, [17], [])
    return first, second, text


def _run_model(backend: str, dtype: str, full: dict, docs) -> dict:
    """Logits of the packed micro-batch and of each document alone, per-parameter gradients of the packed
    loss, and the model's weights exported to HF names."""
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.models.hf_mapping import to_hf
    from megatron_vl.models.sharding import gather_full_state_dict, load_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = tiny_config(dtype=dtype)
    model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform_for(backend))
    load_full_state_dict(model, full)
    first, second, text = docs
    rows = [[first, second], [text, second]]
    seq_len = max(sum(len(doc.ids) for doc in row) for row in rows) + 3
    batch = to_device(micro_batch(rows, seq_len=seq_len), TEST_DEVICE)
    with torch.no_grad():
        packed = model(**{**model_inputs(batch), "labels": None})
        alone = []
        for doc in (first, second, text):
            alone.append(model(**to_device(doc.model_inputs(), TEST_DEVICE))[0])
    per_token = model(**model_inputs(batch))
    (per_token * batch["loss_mask"]).sum().backward()
    spans = {
        "row 0, first document": (packed[0, : len(first.ids)], alone[0]),
        "row 0, second document": (packed[0, len(first.ids) : len(first.ids) + len(second.ids)], alone[1]),
        "row 1, text document": (packed[1, : len(text.ids)], alone[2]),
    }
    return {
        "logits": packed.float().cpu(),
        "packed vs alone": {where: (a.float().cpu(), b.float().cpu()) for where, (a, b) in spans.items()},
        "grads": gather_full_state_dict(model, lambda param: param.grad.float().cpu()),
        "alone": [logits.float().cpu() for logits in alone],
        "export": to_hf(gather_full_state_dict(model, lambda param: param.detach().float().cpu()), config),
    }


def _hf_logits(hf_state: dict, dtype: str, docs) -> list[torch.Tensor]:
    """transformers' logits of each document, from the exported weights."""
    hf = hf_model(tiny_config())
    hf.load_state_dict(hf_state)
    hf = hf.to(TEST_DEVICE, getattr(torch, dtype))
    logits = []
    for doc in docs:
        inputs = to_device({**doc.hf_inputs(), "position_ids": doc.positions[:, None]}, TEST_DEVICE)
        for pixels in ("pixel_values", "pixel_values_videos"):
            if inputs[pixels] is not None:
                inputs[pixels] = inputs[pixels].to(getattr(torch, dtype))
        with torch.no_grad():
            logits.append(hf(**inputs).logits[0].float().cpu())
    return logits


def _all_backends() -> dict:
    from megatron_vl.models.hf_mapping import from_hf

    strict_fp32()
    hf = hf_model(tiny_config())
    full = from_hf(hf.state_dict(), tiny_config())
    docs = _documents(hf)
    results = {(backend, dtype): _run_model(backend, dtype, full, docs) for backend in layer_backends() for dtype in DTYPES}
    exported = results[("local", "float32")]["export"]
    hf_results = {dtype: _hf_logits(exported, dtype, docs) for dtype in DTYPES}
    return {"ours": results, "transformers": hf_results}


@pytest.fixture(scope="module")
def outputs():
    return run_ranks(_all_backends, 1)[0]


def _cases():
    return [(backend, dtype) for backend in ("local", "transformer_engine") for dtype in DTYPES]


def _require(outputs, backend, dtype):
    if (backend, dtype) not in outputs["ours"]:
        pytest.skip(f"Transformer Engine does not import here: {transformer_engine_error()}")
    return outputs["ours"][(backend, dtype)]


def _bf16_checks(result: dict, reference: dict) -> None:
    assert relative_error(result["logits"], reference["logits"]) <= BF16_LOGITS_RTOL
    for name, grad in reference["grads"].items():
        assert relative_error(result["grads"][name], grad) <= BF16_GRADIENT_RTOL, name


@pytest.mark.parametrize("backend, dtype", _cases())
def test_packed_documents_give_the_logits_of_each_document_alone(outputs, backend, dtype):
    result = _require(outputs, backend, dtype)
    for where, (packed, alone) in result["packed vs alone"].items():
        if dtype == "float32":
            assert (packed - alone).abs().max() <= FP32_LOGITS_ATOL, where
        else:
            assert relative_error(packed, alone) <= BF16_LOGITS_RTOL, where


def test_transformer_engine_equals_local_layers_in_fp32(outputs):
    te = _require(outputs, "transformer_engine", "float32")
    local = outputs["ours"][("local", "float32")]
    assert (te["logits"] - local["logits"]).abs().max() <= FP32_LOGITS_ATOL
    assert te["grads"].keys() == local["grads"].keys()
    for name, grad in local["grads"].items():
        assert relative_error(te["grads"][name], grad) <= FP32_GRADIENT_RTOL, name


@pytest.mark.parametrize("backend", ["local", "transformer_engine"])
def test_bf16_stays_close_to_fp32(outputs, backend):
    _bf16_checks(_require(outputs, backend, "bfloat16"), outputs["ours"][("local", "float32")])


@pytest.mark.parametrize("backend", ["local", "transformer_engine"])
def test_export_gives_transformers_our_logits_in_fp32(outputs, backend):
    ours = _require(outputs, backend, "float32")["alone"]
    for index, theirs in enumerate(outputs["transformers"]["float32"]):
        assert (ours[index] - theirs).abs().max() <= FP32_LOGITS_ATOL, f"document {index}"


@pytest.mark.parametrize("backend", ["local", "transformer_engine"])
def test_export_in_bf16_is_as_close_to_fp32_as_transformers_is(outputs, backend):
    ours = _require(outputs, backend, "bfloat16")["alone"]
    references, theirs = outputs["transformers"]["float32"], outputs["transformers"]["bfloat16"]
    for index, reference in enumerate(references):
        their_error = relative_error(theirs[index], reference)
        assert relative_error(ours[index], reference) <= 2 * their_error + 1e-3, f"document {index}"
