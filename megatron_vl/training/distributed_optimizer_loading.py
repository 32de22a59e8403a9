"""Fixes to how megatron-core 0.16.1's distributed optimizer loads a checkpoint.

Without Transformer Engine or Apex (always on CPU, and on a GPU without them) megatron's
``DistributedOptimizer`` steps ``torch.optim.AdamW``, which keeps a ``step`` tensor per parameter, where
the fused Adams keep one per param group. Training and saving work; resuming does not:

1. ``sharded_state_dict(is_loading=True)`` first calls ``state_dict()``, which asserts that the torch
   optimizer's per-parameter states hold exactly one step count. A fresh optimizer has no state yet (torch
   creates it at the first step), so every resume fails on that assertion.
2. ``load_state_dict`` restores the step count from the param groups, then copies each parameter's
   loaded tensors into its state with ``_set_main_param_and_optimizer_states``, which copies every key
   of the state, ``step`` included. The ``fully_reshardable`` loader leaves ``step`` out of the loaded
   tensors: ``KeyError: 'step'``. The ``dp_reshardable`` loader hands back the step tensor the state held
   when the load was prepared (0 in a fresh optimizer), which overwrites the restored count.
3. ``load_state_dict`` puts one and the same step tensor into every parameter's state. torch's Adam
   increments each parameter's step in place, so after a resume the shared count advances once per
   parameter at every step, and the bias corrections (and so the updates) differ from an uninterrupted run.

And with any Adam, in fp32 training (main parameters are views of the fp32 model parameters):

4. the ``dp_reshardable`` loader copies into the main parameters with autograd on (the
   ``fully_reshardable`` one runs under ``no_grad``): "a view of a leaf Variable that requires grad is
   being used in an in-place operation".

``enable()`` wraps three methods of ``DistributedOptimizer``: ``state_dict`` of a torch Adam that has not
stepped first creates the state its first step would create (zero moments, step 0);
``_set_main_param_and_optimizer_states`` runs under ``no_grad`` and keeps the step count restored from
the param groups; ``load_state_dict`` gives each parameter a step tensor of its own. Each fix acts only
where its problem exists: with a fused Adam (no per-parameter ``step``) only the ``no_grad`` of 4 applies.
None of this is specific to the CPU emulation: a GPU without Transformer Engine / Apex needs the same.
"""

from __future__ import annotations

import functools
import threading

import torch
from megatron.core.optimizer import distrib_optimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

_ENABLED = False
_LOCK = threading.Lock()


def _create_fresh_state(optimizer: torch.optim.Optimizer) -> None:
    """The per-parameter state torch's Adam creates at its first step (``amsgrad`` off, as megatron uses it)."""
    assert isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW), type(optimizer)
    for group in optimizer.param_groups:
        for param in group["params"]:
            optimizer.state[param] = {
                "step": torch.zeros((), dtype=torch.float32),
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
            }


def _state_dict_of_fresh_torch_adam(state_dict):
    @functools.wraps(state_dict)
    def wrapper(self):
        if not distrib_optimizer.HAVE_APEX_OR_TE and len(self.optimizer.state) == 0:
            _create_fresh_state(self.optimizer)
        return state_dict(self)

    return wrapper


def _set_states_without_grad_keeping_the_step(set_states):
    @functools.wraps(set_states)
    @torch.no_grad()
    def wrapper(self, model_param, tensors):
        current = self._get_main_param_and_optimizer_states(model_param)
        if "step" in current:
            tensors = {**tensors, "step": current["step"]}
        set_states(self, model_param, tensors)

    return wrapper


def _load_state_dict_with_own_steps(load_state_dict):
    @functools.wraps(load_state_dict)
    def wrapper(self, state_dict):
        load_state_dict(self, state_dict)
        for state in self.optimizer.state.values():
            if "step" in state:
                state["step"] = state["step"].clone()

    return wrapper


def enable() -> None:
    """Apply the fixes to ``DistributedOptimizer``, for this process, from now on (idempotent)."""
    global _ENABLED
    with _LOCK:
        if _ENABLED:
            return
        DistributedOptimizer.state_dict = _state_dict_of_fresh_torch_adam(DistributedOptimizer.state_dict)
        DistributedOptimizer._set_main_param_and_optimizer_states = _set_states_without_grad_keeping_the_step(
            DistributedOptimizer._set_main_param_and_optimizer_states
        )
        DistributedOptimizer.load_state_dict = _load_state_dict_with_own_steps(DistributedOptimizer.load_state_dict)
        _ENABLED = True
