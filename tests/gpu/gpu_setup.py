"""What the GPU tests run on: the device, the layer backends that import here, and numerics settings.

Tolerances used by the tests (fp32 runs with TF32 off, so that fp32 means fp32 on the GPU):

* fp32, two implementations of the same math (TE vs local layers, ours vs transformers, packed vs alone):
  ``max |a - b| <= 1e-4`` for logits (the CPU suite's bound against transformers) and a relative error
  ``||a - b|| / ||b|| <= 1e-4`` for each parameter's gradient;
* bf16: each result is compared with the fp32 result of the same weights and inputs, as relative error
  ``||x - x_fp32|| / ||x_fp32||``: at most 2e-2 for logits and 5e-2 for gradients (bf16 keeps 8 bits of
  mantissa, 4e-3 relative per rounding, over the tiny model's 4 + 4 layers), and, against transformers, at most
  twice transformers' own bf16 error plus 1e-3.
"""

from __future__ import annotations

import functools
import os

import torch

DEVICE_ENVIRONMENT = "MVL_GPU_TESTS_DEVICE"
TEST_DEVICE = os.environ.get(DEVICE_ENVIRONMENT, "cuda")
"""``cuda``, or ``cpu`` to check the harness on a machine without a GPU (see conftest.py)."""

FP32_LOGITS_ATOL = 1e-4
FP32_GRADIENT_RTOL = 1e-4
BF16_LOGITS_RTOL = 2e-2
BF16_GRADIENT_RTOL = 5e-2


def cuda_available() -> bool:
    return torch.cuda.is_available()


@functools.cache
def transformer_engine_error() -> str | None:
    """Why Transformer Engine cannot be used here, or None (always unusable off a GPU)."""
    if TEST_DEVICE != "cuda":
        return "the tests run on the CPU"
    from megatron_vl.runtime import platform

    return platform.transformer_engine_error()


def layer_backends() -> list[str]:
    """The layer backends the tests compare: local always, Transformer Engine where it imports."""
    return ["local"] + ([] if transformer_engine_error() else ["transformer_engine"])


def platform_for(layer_backend: str):
    """A ``Platform`` for ``layer_backend`` on the test device."""
    from megatron_vl.runtime.platform import Platform, peak_flops_of

    if TEST_DEVICE == "cpu":
        return Platform(device="cpu", device_name="cpu", layer_backend=layer_backend)
    name = torch.cuda.get_device_name(0)
    return Platform(device="cuda", device_name=name, layer_backend=layer_backend, peak_flops=peak_flops_of(name))


def strict_fp32() -> None:
    """fp32 matrix products and convolutions in full fp32 (no TF32) on the GPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def to_device(batch: dict, device) -> dict:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
