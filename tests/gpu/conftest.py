"""The GPU tests (``launch/gpu_check.sh`` runs them on one GPU): every test here is marked ``gpu`` and skipped
where torch sees no CUDA device, so CI, which is CPU-only, collects and skips them.

``MVL_GPU_TESTS_DEVICE=cpu`` runs them on the CPU instead (local layers, megatron-core under the CPU emulation):
a check of the harness itself for a machine without a GPU; the Transformer Engine tests still skip, and nothing
it prints says anything about a GPU.
"""

from __future__ import annotations

import pytest

from tests.gpu.gpu_setup import TEST_DEVICE, cuda_available


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU (launch/gpu_check.sh runs these)")
    for item in items:
        if "tests/gpu/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.gpu)
        if TEST_DEVICE == "cuda" and not cuda_available():
            item.add_marker(skip)
