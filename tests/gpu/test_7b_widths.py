"""One layer of each tower at the 7B's widths against transformers, in fp32 and bf16, on random weights.

The other GPU tests use ``tiny`` (head dim 16). The kernels the 7B runs see other shapes: head dim 128 with 32
query heads over 8 key/value groups in the LLM, head dim 80 with 16 heads in the ViT (a windowed layer and a
full-attention layer), the 5120-wide merger, SwiGLU widths 11008 and 3420. Here a model of the 7B's widths
(``mimo_vl_7b`` with 2 ViT layers, 1 LLM layer and a 4096-token vocabulary) runs one packed row (a document with
a 16 x 24-patch image, then a text document) per layer backend and dtype, and transformers'
``Qwen2_5_VLForConditionalGeneration`` with the same weights runs each document alone: logits and every
parameter's gradient of the same loss are compared. Weights are drawn at the 7B's init std (0.02).

Tolerances (``tests/gpu/gpu_setup.py``): fp32 logits ``max |a - b| <= 1e-4`` and gradients relative error
``<= 1e-4`` per parameter; bf16 against transformers' fp32, at most twice transformers' own bf16 error plus 1e-3
for logits, and for each gradient at most twice the larger of transformers' own bf16 error on that gradient and
its median over all gradients (a few gradients of near-zero size have a relative error of noise).
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from megatron_vl.config.model import VLModelConfig, mimo_vl_7b
from tests.gpu.gpu_setup import (
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
from tests.models.vl_batches import IMAGE, TEXT_IDS, VIDEO, document, hf_model, micro_batch, model_inputs
from tests.multirank import run_ranks

DTYPES = ("float32", "bfloat16")
INIT_STD = 0.02


def seven_b_widths(dtype: str = "float32") -> VLModelConfig:
    """``mimo_vl_7b`` cut to 2 ViT layers (windowed, then full attention), 1 LLM layer and a 4096-token vocabulary."""
    full = mimo_vl_7b(image_token_id=IMAGE, video_token_id=VIDEO, dtype=dtype)
    vision = dataclasses.replace(full.vision, num_layers=2, full_attention_layers=(1,))
    language = dataclasses.replace(full.language, num_layers=1, vocab_size=TEXT_IDS[1])
    return dataclasses.replace(full, vision=vision, language=language)


def _documents(hf):
    generator = torch.Generator().manual_seed(2)
    return document(hf, generator, [6, 9], [(1, 16, 24)]), document(hf, generator, [40], [])


def _batch(docs) -> dict:
    return micro_batch([list(docs)], seq_len=sum(len(doc.ids) for doc in docs) + 3)


def _spans(docs) -> list[slice]:
    starts = [0]
    for doc in docs:
        starts.append(starts[-1] + len(doc.ids))
    return [slice(start, end) for start, end in zip(starts, starts[1:])]


def _ours(backend: str, dtype: str, full: dict, docs) -> dict:
    """Our logits per document (from the packed row) and our gradients of the row's loss, under HF names."""
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.models.hf_mapping import to_hf
    from megatron_vl.models.sharding import gather_full_state_dict, load_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = seven_b_widths(dtype)
    model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform_for(backend))
    load_full_state_dict(model, full)
    batch = to_device(_batch(docs), TEST_DEVICE)
    with torch.no_grad():
        logits = model(**{**model_inputs(batch), "labels": None})[0].float().cpu()
    per_token = model(**model_inputs(batch))
    (per_token.float() * batch["loss_mask"]).sum().backward()
    grads = to_hf(gather_full_state_dict(model, lambda param: param.grad.float().cpu()), config)
    del model
    return {"logits": [logits[span] for span in _spans(docs)], "grads": grads}


def _transformers(hf, docs) -> dict:
    """transformers' logits of each document alone and its gradients of the same loss (the documents' sum)."""
    dtype = next(hf.parameters()).dtype
    batch = _batch(docs)
    logits, loss = [], 0.0
    for doc, span in zip(docs, _spans(docs)):
        inputs = to_device({**doc.hf_inputs(), "position_ids": doc.positions[:, None]}, TEST_DEVICE)
        if inputs["pixel_values"] is not None:
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        doc_logits = hf(**inputs).logits[0].float()
        labels, mask = (batch[key][0, span].to(TEST_DEVICE) for key in ("labels", "loss_mask"))
        loss = loss + (torch.nn.functional.cross_entropy(doc_logits, labels, reduction="none") * mask).sum()
        logits.append(doc_logits.detach().cpu())
    loss.backward()
    grads = {name: param.grad.float().cpu() for name, param in hf.named_parameters() if param.grad is not None}
    hf.zero_grad(set_to_none=True)
    return {"logits": logits, "grads": grads}


def _errors(ours: dict, reference: dict) -> dict:
    """How far ``ours`` is from ``reference``: max |difference| of each document's logits, relative error of each
    gradient, and the gradient names missing on either side."""
    return {
        "logits max abs": [float((a - b).abs().max()) for a, b in zip(ours["logits"], reference["logits"])],
        "logits relative": [relative_error(a, b) for a, b in zip(ours["logits"], reference["logits"])],
        "grads relative": {name: relative_error(ours["grads"][name], grad)
                           for name, grad in reference["grads"].items() if name in ours["grads"]},
        "grad names differ": sorted(ours["grads"].keys() ^ reference["grads"].keys()),
    }


def _all_runs() -> dict:
    """Every run's errors against transformers' fp32 (only the errors leave the rank: the gradients of four runs at
    these widths are gigabytes)."""
    from megatron_vl.models.hf_mapping import from_hf

    strict_fp32()
    hf = hf_model(seven_b_widths(), std=INIT_STD)
    full = from_hf(hf.state_dict(), seven_b_widths())
    docs = _documents(hf)
    ours = {(backend, dtype): _ours(backend, dtype, full, docs) for backend in layer_backends() for dtype in DTYPES}
    hf = hf.to(TEST_DEVICE)
    reference = _transformers(hf, docs)
    theirs_bf16 = _transformers(hf.to(torch.bfloat16), docs)
    return {
        "ours": {key: _errors(run, reference) for key, run in ours.items()},
        "transformers bf16": _errors(theirs_bf16, reference),
    }


@pytest.fixture(scope="module")
def errors():
    return run_ranks(_all_runs, 1)[0]


def _ours_for(errors, backend: str, dtype: str) -> dict:
    if (backend, dtype) not in errors["ours"]:
        pytest.skip(f"Transformer Engine does not import here: {transformer_engine_error()}")
    return errors["ours"][(backend, dtype)]


@pytest.mark.parametrize("backend", ["local", "transformer_engine"])
def test_fp32_logits_and_gradients_equal_transformers(errors, backend):
    ours = _ours_for(errors, backend, "float32")
    for index, error in enumerate(ours["logits max abs"]):
        assert error <= FP32_LOGITS_ATOL, f"document {index}"
    assert not ours["grad names differ"]
    for name, error in ours["grads relative"].items():
        assert error <= FP32_GRADIENT_RTOL, name


@pytest.mark.parametrize("backend", ["local", "transformer_engine"])
def test_bf16_is_as_close_to_fp32_as_transformers_bf16_is(errors, backend):
    ours, theirs = _ours_for(errors, backend, "bfloat16"), errors["transformers bf16"]
    for index, (error, their_error) in enumerate(zip(ours["logits relative"], theirs["logits relative"])):
        assert error <= 2 * their_error + 1e-3, f"document {index}"
    assert not ours["grad names differ"]
    typical = statistics.median(theirs["grads relative"].values())
    for name, error in ours["grads relative"].items():
        their_error = theirs["grads relative"][name]
        assert error <= 2 * max(their_error, typical), f"{name}: {error:.2e} (transformers: {their_error:.2e})"
