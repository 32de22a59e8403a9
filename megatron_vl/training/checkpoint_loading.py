"""Loading a dist checkpoint whatever layer backend wrote it.

The two layer backends (``models/specs.py``) build the same parameters, but Transformer Engine's modules also
carry an ``_extra_state`` (FP8 metadata) where megatron-core's local modules carry none: TE's norms and
``TEDotProductAttention`` have one, the local ``RMSNorm`` and ``PackedDotProductAttention`` do not (linears have
one in both). A checkpoint written on the CPU or by ``from_hf`` therefore lacks entries a TE model asks for,
and a TE checkpoint holds entries a local model never asks for. The second case is harmless (dist_checkpointing
reads only what is asked); for the first, ``load_checkpoint`` leaves out the ``_extra_state`` entries the
checkpoint does not have, and ``load_model_state`` lets those modules keep their fresh extra state. Any other
difference is still an error: only the extra state may differ, never a weight.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.validation import StrictHandling

logger = logging.getLogger(__name__)

EXTRA_STATE = "_extra_state"
"""The state-dict name of a module's extra state (``torch.nn.Module.get_extra_state``)."""


def _is_extra_state(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == EXTRA_STATE


def load_checkpoint(state: dict, directory: str | Path) -> dict:
    """``dist_checkpointing.load(state, directory)``, leaving out the ``_extra_state`` entries it does not hold."""
    loaded, _, absent = dist_checkpointing.load(state, str(directory), strict=StrictHandling.RETURN_UNEXPECTED)
    absent_weights = sorted(key for key in absent if not _is_extra_state(key))
    if absent_weights:
        raise ValueError(
            f"{directory} does not hold {len(absent_weights)} entries this run needs (e.g. {absent_weights[:3]}): it "
            "was written for another model or by an incompatible version; check --model and the checkpoint's run.json"
        )
    if absent:
        logger.info(
            "%s holds no extra state for %d modules (written with another layer backend): they keep their fresh one",
            directory, len(absent),
        )
    return loaded


def load_model_state(model: torch.nn.Module, model_state: dict) -> None:
    """``model.load_state_dict(model_state)`` where ``model_state`` comes from ``load_checkpoint``: modules whose
    extra state the checkpoint did not hold keep theirs."""
    result = model.load_state_dict(model_state, strict=False)
    mismatched = [key for key in (*result.missing_keys, *result.unexpected_keys) if not _is_extra_state(key)]
    assert not mismatched, f"the model's sharded state dict and its state dict disagree: {mismatched}"
