"""RMSNorm for the local (non-Transformer-Engine) layer spec, usable under sequence parallelism.

megatron-core's local spec wraps ``torch.nn.RMSNorm`` and refuses sequence parallelism, because a norm
applied to a sequence shard produces a partial weight gradient on each TP rank. Marking the weight
``sequence_parallel`` tells megatron's ``finalize_model_grads`` to sum those partial gradients over the
TP group, which is all the norm needs.
"""

from __future__ import annotations

import torch
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.models.transformer_configs import parameter_device


class RMSNorm(MegatronModule):
    """``weight * x / sqrt(mean(x²) + eps)``, normalised in float32 like HF's ``Qwen2_5_VLRMSNorm``."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(config=config)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype, device=parameter_device(config)))
        setattr(self.weight, "sequence_parallel", config.sequence_parallel)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(hidden_states.dtype)
