"""``VLModel``: Qwen2.5-ViT -> projector -> M-RoPE LLM on megatron-core, with TP / SP / PP and packed sequences."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel import scatter_to_sequence_parallel_region
from megatron.core.transformer.enums import ModelType
from megatron.core.transformer.module import MegatronModule

from megatron_vl.config.model import VLModelConfig
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.models.context_parallel import ContextShard
from megatron_vl.models.language import build_language_model
from megatron_vl.models.packed_attention import packed_seq_params
from megatron_vl.models.projector import Projector
from megatron_vl.models.specs import language_block_spec, layer_modules, projector_spec, vision_layer_spec
from megatron_vl.models.transformer_configs import (
    language_transformer_config,
    projector_transformer_config,
    vision_transformer_config,
)
from megatron_vl.models.vision import VisionEncoder
from megatron_vl.models.vision_sharing import VisionWorkShare, encode_shared
from megatron_vl.runtime.platform import Platform


class VLModel(MegatronModule):
    """One pipeline stage of the vision-language model.

    Submodules (also the state-dict prefixes): ``vision_model`` (the ViT) and ``vision_projection`` (the
    patch merger), both only on the first pipeline stage (``pre_process``), and ``language_model``
    (megatron's ``GPTModel``; its embedding on the first stage, its output layer on the last).

    ``config`` (the attribute) is the LLM's ``TransformerConfig``, which is what megatron's pipeline
    schedules and DDP read. A micro-batch of ``b`` packed rows of ``s`` tokens runs as one THD sequence of
    ``b * s`` tokens, so the tensors passed between pipeline stages are ``[b * s, 1, hidden]``
    (``[b * s / TP, 1, hidden]`` with sequence parallelism): call the schedule with
    ``seq_length=b * s, micro_batch_size=1``.

    Under context parallelism (``pg_collection.cp`` of more than one rank) every CP rank gets the whole
    micro-batch and a ``ContextShard`` saying which of its tokens the rank holds (``b * s / CP`` of them: the
    pipeline tensors are ``[b * s / CP (/ TP), 1, hidden]``), and a ``VisionWorkShare`` saying which of its images
    and videos the rank encodes; the ViT runs on the rank's share only and each merged row reaches the rank whose
    tokens hold its placeholder (``models/vision_sharing.py``). The ViT itself is never split by CP.

    Freeze parts with ``freeze`` before wrapping the model in megatron's DDP, so that frozen parameters
    get no gradient buffer and no optimizer state.

    ``platform`` (``runtime.detect_platform()``, or the run config's) decides the layer backend and where
    megatron initialises the weights.
    """

    def __init__(
        self,
        config: VLModelConfig,
        *,
        parallel: ParallelConfig,
        pg_collection: ProcessGroupCollection,
        platform: Platform,
        pre_process: bool = True,
        post_process: bool = True,
    ) -> None:
        config.validate_parallel(parallel)
        if pg_collection.tp.size() != parallel.tensor_parallel or pg_collection.pp.size() != parallel.pipeline_parallel:
            raise ValueError(
                f"pg_collection has TP={pg_collection.tp.size()} PP={pg_collection.pp.size()} but the ParallelConfig "
                f"says TP={parallel.tensor_parallel} PP={parallel.pipeline_parallel}; build both from the same layout"
            )
        language_config = language_transformer_config(config, parallel, platform)
        super().__init__(config=language_config)
        self.model_config = config
        self.pg_collection = pg_collection
        self.tp_group = pg_collection.tp
        self.pre_process = pre_process
        self.post_process = post_process
        # Read by megatron's pipeline schedules and finalize_model_grads.
        self.model_type = ModelType.encoder_or_decoder
        self.share_embeddings_and_output_weights = False
        pp_rank = pg_collection.pp.rank()
        self.language_layer_offset = sum(config.layers_per_pipeline_stage(parallel)[:pp_rank])

        modules = layer_modules(platform.layer_backend)
        self.vision_model = None
        self.vision_projection = None
        if pre_process:
            self.vision_model = VisionEncoder(
                config.vision,
                vision_transformer_config(config, parallel, platform),
                vision_layer_spec(modules, config.vision),
                pg_collection,
            )
            self.vision_projection = Projector(
                config,
                projector_transformer_config(config, parallel, platform),
                modules.norm,
                projector_spec(modules),
                pg_collection,
            )
        self.language_model = build_language_model(
            config.language,
            language_config,
            language_block_spec(modules, language_config, pp_rank),
            pg_collection,
            pre_process=pre_process,
            post_process=post_process,
        )
        assert len(self.language_model.decoder.layers) == config.layers_per_pipeline_stage(parallel)[pp_rank]
        self._frozen = {"vision": False, "projector": False, "language": False}

    def freeze(self, *, vision: bool = False, projector: bool = False, language: bool = False) -> None:
        """Set which parts are frozen (``True``) or trained (``False``); each call sets all three.

        Frozen parameters get ``requires_grad=False`` (megatron's DDP then allocates no gradient buffer for
        them); a frozen ViT runs under ``torch.no_grad()``, and so does the projector when both are frozen.
        Gradients still flow through a frozen LLM into a trained projector.
        """
        self._frozen = {"vision": vision, "projector": projector, "language": language}
        for part, frozen in (
            (self.vision_model, vision),
            (self.vision_projection, projector),
            (self.language_model, language),
        ):
            if part is not None:
                for param in part.parameters():
                    param.requires_grad_(not frozen)

    def set_input_tensor(self, input_tensor) -> None:
        """Hidden states from the previous pipeline stage (called by megatron's pipeline schedules)."""
        self.language_model.set_input_tensor(input_tensor)

    def encode_vision(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """ViT + projector: one LLM embedding per merged patch group [num_vision_tokens, hidden], in input order.

        ``pixel_values`` [num_patches, 3*2*14*14]: the image or video processor's flattened patches of all images
        and videos; ``grid_thw`` [num_images_and_videos, 3]: each one's (frames, rows, columns) in patches
        (frames = temporal patches: 1 for an image, ceil(frames / 2) for a video).
        """
        assert self.pre_process, "the ViT lives on the first pipeline stage"
        frozen = self._frozen
        with torch.no_grad() if frozen["vision"] else nullcontext():
            features = self.vision_model(pixel_values, grid_thw)
        with torch.no_grad() if frozen["vision"] and frozen["projector"] else nullcontext():
            return self.vision_projection(features)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        position_ids: torch.Tensor,
        *,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        context_shard: ContextShard | None = None,
        vision_share: VisionWorkShare | None = None,
    ) -> torch.Tensor:
        """Run this pipeline stage on one micro-batch of ``b`` packed rows of ``s`` tokens.

        Args:
            input_ids: [b, s] token ids with one ``image_token_id`` per merged image token and one
                ``video_token_id`` per merged video token (first stage).
            position_ids: [3, b, s] M-RoPE (t, h, w) positions, restarting at 0 for each document.
            pixel_values: [num_patches, 3*2*14*14] HF's flattened patches of every image in the micro-batch,
                in order of appearance (first stage; None or 0 rows when there is no image. With neither images
                nor videos, if the ViT or the projector is trained, a blank merge group runs through them so that
                every trained parameter gets a (zero) gradient, as megatron's DDP with ``overlap_grad_reduce``
                requires).
            image_grid_thw: [num_images, 3] each image's (frames, rows, columns) in patches.
            pixel_values_videos: [num_video_patches, 3*2*14*14] HF's flattened patches of every video in the
                micro-batch, in order of appearance (first stage; None or 0 rows when there is no video).
                Images and videos run through the ViT together; attention never crosses one frame.
            video_grid_thw: [num_videos, 3] each video's (temporal patches, rows, columns).
            cu_seqlens: int [num_segments + 1] document boundaries as offsets into the ``b * s`` tokens read
                row by row; must include every row boundary (padding at the end of a row is its own
                segment). None: each row is one document. Attention never crosses a boundary.
            labels: [b, s] target ids (valid ids everywhere; masking is the loss function's job).
            context_shard: under context parallelism, this CP rank's tokens of the micro-batch (every segment of
                ``cu_seqlens`` a multiple of 2 x CP); None without it.
            vision_share: under context parallelism, who encodes each image and video of the micro-batch (images,
                then videos) and who receives each merged row; None when it has neither.

        Returns:
            last stage with labels: per-token cross-entropy [b, s] (float32), [1, b * s / CP] of this rank's
                tokens under CP;
            last stage without labels: logits [b, s, vocab_size] gathered over TP ([1, b * s / CP, vocab_size]
                under CP);
            other stages: hidden states for the next stage.
        """
        if position_ids.dim() != 3 or position_ids.shape[0] != 3:
            raise ValueError(f"position_ids must be [3, b, s] M-RoPE positions, got shape {tuple(position_ids.shape)}")
        batch, seq = position_ids.shape[1:]
        cp = self.pg_collection.cp.size()
        if (context_shard is None) != (cp == 1):
            raise ValueError(
                f"the model runs with context parallelism over {cp} ranks: pass context_shard (models.context_parallel."
                "context_shard of the micro-batch's cu_seqlens and the CP group) exactly when CP > 1"
            )
        tokens = batch * seq // cp
        if self.config.sequence_parallel and tokens % self.tp_group.size():
            raise ValueError(
                f"sequence parallelism splits the {tokens} tokens a rank holds of a {batch} x {seq} micro-batch over "
                f"{self.tp_group.size()} TP ranks; pad the packed sequence length to a multiple of TP x 2 x CP"
            )
        segments = self._segments(cu_seqlens, batch, seq, position_ids.device, context_shard)
        local = context_shard.local if context_shard is not None else (lambda tensor: tensor.reshape(*tensor.shape[:-2], 1, -1))
        decoder_input = None
        if self.pre_process:
            decoder_input = self._embed(
                input_ids.reshape(1, batch * seq), (pixel_values, image_grid_thw), (pixel_values_videos, video_grid_thw),
                context_shard, vision_share,
            )
        output = self.language_model(
            input_ids=None,
            position_ids=local(position_ids),
            attention_mask=None,
            decoder_input=decoder_input,
            labels=None if labels is None else local(labels),
            packed_seq_params=segments,
            runtime_gather_output=labels is None,
        )
        if not self.post_process:
            return output
        shape = (batch, seq) if context_shard is None else (1, tokens)
        if labels is not None:
            return output.reshape(shape)
        return output.reshape(*shape, -1)[..., : self.model_config.language.vocab_size]

    def _segments(self, cu_seqlens, batch: int, seq: int, device, context_shard) -> PackedSeqParams:
        tokens = batch * seq
        if cu_seqlens is None:
            if context_shard is not None:
                raise ValueError("context parallelism needs the micro-batch's cu_seqlens; pass them")
            return packed_seq_params(torch.arange(0, tokens + 1, seq, device=device))
        bounds = cu_seqlens.tolist()
        problem = None
        if cu_seqlens.dim() != 1 or bounds[0] != 0 or bounds[-1] != tokens:
            problem = f"it must be 1-D, start at 0 and end at b * s = {tokens}"
        elif any(later <= earlier for earlier, later in zip(bounds, bounds[1:])):
            problem = "it must be strictly increasing"
        elif not set(range(0, tokens, seq)) <= set(bounds):
            problem = f"it must contain every row boundary (multiples of s = {seq}): a document cannot span two rows"
        if problem:
            raise ValueError(f"cu_seqlens {bounds} is not a segmentation of the micro-batch: {problem}")
        if context_shard is not None and context_shard.cu_seqlens.tolist() != bounds:
            raise ValueError("context_shard was made for other cu_seqlens than the micro-batch's; make it from them")
        return packed_seq_params(cu_seqlens.to(device), context=context_shard)

    def _blank_image_embedding(self, like: torch.Tensor) -> torch.Tensor:
        vision = self.model_config.vision
        merge = vision.spatial_merge_size
        pixels = like.new_zeros(merge * merge, vision.patch_dim)
        grid = torch.tensor([[1, merge, merge]], device=like.device)
        return self.encode_vision(pixels, grid)

    def _embed(self, input_ids: torch.Tensor, images: tuple, videos: tuple, context_shard, vision_share) -> torch.Tensor:
        """Token embeddings [b*s, 1, hidden] (this CP rank's [b*s / CP, 1, hidden]) with image and video placeholders
        replaced, scattered for SP.

        ``input_ids`` [1, b*s] are the whole micro-batch's; ``images`` and ``videos`` are (patches, grid_thw) pairs,
        either of which may be (None, None).
        """
        config = self.model_config
        given = []
        for kind, token_id, (pixels, grid), names in (
            ("image", config.image_token_id, images, ("pixel_values", "image_grid_thw")),
            ("video", config.video_token_id, videos, ("pixel_values_videos", "video_grid_thw")),
        ):
            num_placeholders = int((input_ids[0] == token_id).sum())
            if pixels is None or pixels.shape[0] == 0:
                if num_placeholders:
                    raise ValueError(
                        f"the micro-batch has {num_placeholders} {kind} placeholder tokens (id {token_id}) but no "
                        f"{names[0]}"
                    )
                continue
            if grid is None:
                raise ValueError(f"{names[0]} were given without {names[1]}; pass each {kind}'s (t, h, w) grid")
            num_patches = int(grid.prod(dim=-1).sum())
            if pixels.shape[0] != num_patches:
                raise ValueError(
                    f"{names[0]} has shape {tuple(pixels.shape)} but {names[1]} describes {num_patches} patches; pass "
                    f"the processor's flattened patches of every {kind} of the micro-batch, in order"
                )
            rows = num_patches // config.vision.spatial_merge_size**2
            if rows != num_placeholders:
                raise ValueError(
                    f"the {kind}s give {rows} {kind} tokens but input_ids has {num_placeholders} placeholders (id "
                    f"{token_id}); each {kind} needs t*h*w/merge² of them"
                )
            given.append((token_id, pixels, grid))
        local_ids = input_ids if context_shard is None else context_shard.local(input_ids)
        embeddings = self.language_model.embedding(input_ids=local_ids, position_ids=None)
        if not given:
            if torch.is_grad_enabled() and not (self._frozen["vision"] and self._frozen["projector"]):
                # megatron's DDP with overlap_grad_reduce waits for a gradient of every trained parameter, so a
                # text-only micro-batch runs the ViT on one blank merge group and adds zero times its output.
                embeddings = embeddings + 0.0 * self._blank_image_embedding(embeddings).sum()
        else:
            # One ViT pass over images and videos together: each frame attends only within itself (or its
            # windows), so the features are those of separate passes, for one launch of every layer.
            pixels = torch.cat([pixels for _, pixels, _ in given])
            grids = torch.cat([grid for *_, grid in given])
            if context_shard is None:
                features = self.encode_vision(pixels, grids)
            elif vision_share is None:
                raise ValueError("under context parallelism a micro-batch with images or videos needs a vision_share")
            else:
                features = encode_shared(self.encode_vision, pixels, grids, vision_share,
                                         nothing_to_encode=lambda: self._blank_image_embedding(embeddings)[:0])
            placeholders = [local_ids[0] == token_id for token_id, *_ in given]
            sizes = [int(mask.sum()) for mask in placeholders]
            assert features.shape[0] == sum(sizes), "a vision row for every placeholder this rank holds"
            for mask, part in zip(placeholders, features.to(embeddings.dtype).split(sizes)):
                embeddings = embeddings.masked_scatter(mask[:, None, None], part)
        if self.config.sequence_parallel:
            embeddings = scatter_to_sequence_parallel_region(embeddings, group=self.tp_group)
        return embeddings
