"""The model step: one ``VLBatch`` micro-batch -> ``VLModel`` forward -> the loss function megatron's
schedules call. The only training module that knows the model's inputs and its loss.

The loss is the mean over loss-masked tokens of the whole global batch: the loss function returns the
*sum* of the masked per-token losses and the token count (megatron's ``calculate_per_token_loss``), the
schedule backpropagates the sum, and ``finalize_model_grads`` divides the gradients by the token count
summed over all micro-batches and data-parallel ranks. This is exact whatever the packing, the number
of loss tokens per micro-batch, DP, PP or CP: under context parallelism each CP rank returns the sum and count of
the tokens it holds, and the schedule's token count and the gradients are summed over DP x CP.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Iterator

import torch
import torch.distributed as dist

from megatron_vl.config.model import VLModelConfig
from megatron_vl.data.batch import VLBatch
from megatron_vl.training.context_split import context_split
from megatron_vl.training.flops import training_flops


def masked_token_loss(loss_mask: torch.Tensor, per_token_loss: torch.Tensor):
    """(sum of the per-token losses where ``loss_mask`` is 1, number of such tokens, logged [sum, count])."""
    total = (per_token_loss.float() * loss_mask).sum()
    count = loss_mask.sum().to(torch.int)
    return total, count, {"loss": torch.stack([total.detach(), count.detach().float()])}


class VLModelStep:
    """The trainer's ``ModelStep``: ``forward_step_func``s for megatron's schedules.

    ``train_forward`` counts what it ran; ``stats()`` returns and resets, since the last call, the model FLOPs
    (for MFU) and the loss tokens per data kind of the training micro-batches this rank ran.
    ``eval_forward`` counts nothing. Under context parallelism (``cp_group`` of more than one rank) every CP rank
    gets the whole micro-batch and runs its share (``training/context_split.py``); the counts are the whole
    micro-batch's on every CP rank.
    """

    def __init__(self, config: VLModelConfig, frozen: dict[str, bool], device: torch.device,
                 cp_group: dist.ProcessGroup | None = None) -> None:
        self.config = config
        self.frozen = dict(frozen)
        self.device = device
        self.cp_group = cp_group
        self._flops = 0.0
        self._loss_tokens: Counter = Counter()

    def train_forward(self, data_iterator: Iterator[VLBatch], model: torch.nn.Module):
        batch = next(data_iterator)
        self._flops += training_flops(self.config, self.frozen, batch.cu_seqlens, batch.image_grid_thw,
                                      batch.video_grid_thw)
        self._loss_tokens.update(batch.loss_tokens_per_kind)
        return self._forward(batch, model)

    def eval_forward(self, data_iterator: Iterator[VLBatch], model: torch.nn.Module):
        return self._forward(next(data_iterator), model)

    def _forward(self, batch: VLBatch, model: torch.nn.Module):
        batch = batch.to(self.device, non_blocking=True)
        shard, vision_share = context_split(
            self.config, self.cp_group, tokens=batch.tokens, cu_seqlens=batch.cu_seqlens,
            image_grid_thw=batch.image_grid_thw, video_grid_thw=batch.video_grid_thw,
        )
        per_token_loss = model(
            batch.tokens,
            batch.position_ids,
            pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw,
            pixel_values_videos=batch.pixel_values_videos,
            video_grid_thw=batch.video_grid_thw,
            cu_seqlens=batch.cu_seqlens,
            labels=batch.labels,
            context_shard=shard,
            vision_share=vision_share,
        )
        loss_mask = batch.loss_mask if shard is None else shard.local(batch.loss_mask)
        return per_token_loss, partial(masked_token_loss, loss_mask)

    def stats(self) -> dict:
        stats = {"flops": self._flops, "loss_tokens": dict(self._loss_tokens)}
        self._flops = 0.0
        self._loss_tokens = Counter()
        return stats
