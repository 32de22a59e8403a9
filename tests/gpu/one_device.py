"""The tiny recipes on one device, as the GPU tests run them through the training entry point (``torchrun
--standalone``, bf16 as the GPU run uses it): TP, SP and PP off, 4 sequences a step, captions and interleaved
documents of the test data root (128 tokens)."""

from __future__ import annotations

ONE_DEVICE = ("parallel.sequence_parallel=false", "parallel.tensor_parallel=1",
              "parallel.first_pipeline_stage_language_layers=null", "parallel.pipeline_parallel=1", "global_batch_size=4",
              "eval.every=null",
              'blend=[{"kind": "caption", "weight": 1}, {"kind": "interleaved", "weight": 1}]')
"""``--set`` overrides that put a tiny recipe on one device and the test data root."""


def steps(iterations: int) -> str:
    """The ``--set`` of a run of ``iterations`` steps."""
    return f"train_tokens={iterations * 4 * 128}"
