"""Model configs: the Qwen2.5-ViT encoder, the patch-merger projector, the M-RoPE LLM, and their composition.

Presets: ``mimo_vl_7b`` (the MiMo-VL-7B shape of DESIGN.md) and ``tiny`` (the same structure at a size
that runs in seconds on a CPU). Each config checks itself on construction; ``VLModelConfig.validate_parallel``
checks that a parallel layout can split the model.
"""

from __future__ import annotations

import dataclasses

from megatron_vl.config.parallel import ParallelConfig

DTYPES = ("float32", "bfloat16")


def _require_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _require_divisible(what: str, value: int, divisor: int, divisor_name: str, fix: str) -> None:
    if value % divisor:
        raise ValueError(f"{what}={value} is not divisible by {divisor_name}={divisor}; {fix}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VisionConfig:
    """The Qwen2.5-ViT encoder: native-resolution patches, 2D rotary, window attention."""

    num_layers: int
    """Transformer layers (``depth`` in HF)."""
    hidden_size: int
    """Width of the encoder (``hidden_size`` in HF's vision config)."""
    num_attention_heads: int
    """Attention heads; every head has its own key/value (no GQA in the ViT)."""
    ffn_hidden_size: int
    """Width of each gate and up projection of the SwiGLU MLP (``intermediate_size`` in HF)."""
    full_attention_layers: tuple[int, ...]
    """0-based indices of layers that attend over the whole image; all others attend within windows."""
    patch_size: int = 14
    """Side of a square patch in pixels."""
    temporal_patch_size: int = 2
    """Frames per patch (a still image is repeated to fill them, as HF's image processor does)."""
    in_channels: int = 3
    """Colour channels of the pixels."""
    spatial_merge_size: int = 2
    """The projector concatenates ``spatial_merge_size``² neighbouring patches into one LLM token."""
    window_size: int = 112
    """Side of an attention window in pixels; a multiple of ``patch_size * spatial_merge_size``."""
    rope_theta: float = 10000.0
    """Base of the 2D rotary embedding (h and w each rotate a quarter of every head's pairs)."""
    norm_eps: float = 1e-6
    """Epsilon of the RMSNorms."""
    tokens_per_second: int = 2
    """Temporal position step per second of video; only exported into the HF config."""

    def __post_init__(self) -> None:
        _require_positive(
            "VisionConfig",
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            ffn_hidden_size=self.ffn_hidden_size,
            patch_size=self.patch_size,
            temporal_patch_size=self.temporal_patch_size,
            in_channels=self.in_channels,
            spatial_merge_size=self.spatial_merge_size,
            window_size=self.window_size,
        )
        _require_divisible(
            "VisionConfig.hidden_size", self.hidden_size, self.num_attention_heads, "num_attention_heads",
            "choose a hidden size that is a multiple of the head count",
        )
        if self.head_dim % 4:
            raise ValueError(
                f"VisionConfig head dim {self.head_dim} (hidden_size / num_attention_heads) must be a multiple "
                "of 4: the 2D rotary gives a quarter of each head's dimensions to each of h and w, in pairs"
            )
        unit = self.patch_size * self.spatial_merge_size
        _require_divisible(
            "VisionConfig.window_size", self.window_size, unit, "patch_size * spatial_merge_size",
            f"use a window of a whole number of merged patches, e.g. {unit * max(1, self.window_size // unit)}",
        )
        layers = tuple(self.full_attention_layers)
        if list(layers) != sorted(set(layers)) or any(not 0 <= i < self.num_layers for i in layers):
            raise ValueError(
                f"VisionConfig.full_attention_layers={layers!r} must be increasing, distinct layer indices in "
                f"[0, {self.num_layers}); e.g. {tuple(range(7, self.num_layers, 8))} for every 8th layer"
            )
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("VisionConfig.norm_eps and rope_theta must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def patch_dim(self) -> int:
        """Values in one flattened patch: channels x frames x pixels (1176 for 3 x 2 x 14 x 14)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merged_hidden_size(self) -> int:
        """Width of one concatenated ``spatial_merge_size``² patch group, the projector's input."""
        return self.hidden_size * self.spatial_merge_size**2

    @property
    def window_merged_patches(self) -> int:
        """Side of a window in merged patches (4 for a 112 px window of 2 x 2 groups of 14 px patches)."""
        return self.window_size // (self.patch_size * self.spatial_merge_size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProjectorConfig:
    """The patch merger (``visual.merger`` in HF): RMSNorm, concatenate merge groups, Linear-GELU-Linear."""

    ffn_hidden_size: int
    """Width of the hidden layer; HF checkpoints use the merged width (vision hidden x merge²)."""
    norm_eps: float = 1e-6
    """Epsilon of the RMSNorm applied to each patch before merging."""

    def __post_init__(self) -> None:
        _require_positive("ProjectorConfig", ffn_hidden_size=self.ffn_hidden_size)
        if self.norm_eps <= 0:
            raise ValueError("ProjectorConfig.norm_eps must be positive")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageConfig:
    """The decoder LLM: GQA with qkv bias, SwiGLU, RMSNorm, M-RoPE, untied embeddings."""

    num_layers: int
    """Transformer layers."""
    hidden_size: int
    """Model width."""
    num_attention_heads: int
    """Query heads."""
    num_query_groups: int
    """Key/value heads (GQA groups); divides ``num_attention_heads``."""
    ffn_hidden_size: int
    """Width of each gate and up projection of the SwiGLU MLP."""
    vocab_size: int
    """Token ids the tokenizer can produce; the embedding is padded to a multiple of TP where needed."""
    mrope_section: tuple[int, int, int]
    """Rotary pairs given to the (t, h, w) position axes; sums to head_dim / 2."""
    rope_theta: float = 1000000.0
    """Base of the rotary embedding."""
    max_position_embeddings: int = 32768
    """Longest sequence the positions are meant for (exported into the HF config)."""
    norm_eps: float = 1e-6
    """Epsilon of the RMSNorms."""

    def __post_init__(self) -> None:
        _require_positive(
            "LanguageConfig",
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            num_query_groups=self.num_query_groups,
            ffn_hidden_size=self.ffn_hidden_size,
            vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings,
        )
        _require_divisible(
            "LanguageConfig.hidden_size", self.hidden_size, self.num_attention_heads, "num_attention_heads",
            "choose a hidden size that is a multiple of the head count",
        )
        _require_divisible(
            "LanguageConfig.num_attention_heads", self.num_attention_heads, self.num_query_groups,
            "num_query_groups", "each key/value group must serve the same number of query heads",
        )
        section = tuple(self.mrope_section)
        if len(section) != 3 or any(not isinstance(s, int) or s < 1 for s in section):
            raise ValueError(
                f"LanguageConfig.mrope_section={section!r} must be three positive integers (t, h, w)"
            )
        if sum(section) != self.head_dim // 2:
            raise ValueError(
                f"LanguageConfig.mrope_section={section!r} sums to {sum(section)}, but the head dim "
                f"{self.head_dim} has {self.head_dim // 2} rotary pairs; make the sections sum to {self.head_dim // 2}"
            )
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("LanguageConfig.norm_eps and rope_theta must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tensor_parallel: int) -> int:
        """Rows of the embedding and output layer: ``vocab_size`` rounded up to a multiple of TP."""
        return -(-self.vocab_size // tensor_parallel) * tensor_parallel


@dataclasses.dataclass(frozen=True, kw_only=True)
class VLModelConfig:
    """The whole model: ViT -> projector -> LLM, with the image placeholder the LLM's input carries."""

    vision: VisionConfig
    """The vision encoder."""
    projector: ProjectorConfig
    """The patch merger between the encoder and the LLM."""
    language: LanguageConfig
    """The decoder LLM."""
    image_token_id: int
    """Id of ``<|image_pad|>`` in the tokenizer: each one is replaced by one projector output, in order."""
    first_pipeline_stage_language_layers: int | None = None
    """With PP > 1: LLM layers on the first stage, which also holds the ViT and projector (None: even split)."""
    dtype: str = "float32"
    """Parameter and activation dtype, ``float32`` or ``bfloat16``."""
    init_method_std: float = 0.02
    """Standard deviation of the normal initialisation of weight matrices."""

    def __post_init__(self) -> None:
        if not isinstance(self.image_token_id, int) or not 0 <= self.image_token_id < self.language.vocab_size:
            raise ValueError(
                f"VLModelConfig.image_token_id={self.image_token_id!r} is not a token id below vocab_size "
                f"{self.language.vocab_size}; pass the tokenizer's id of <|image_pad|>"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"VLModelConfig.dtype={self.dtype!r}: choose one of {DTYPES}")
        layers = self.first_pipeline_stage_language_layers
        if layers is not None and (not isinstance(layers, int) or not 1 <= layers < self.language.num_layers):
            raise ValueError(
                f"VLModelConfig.first_pipeline_stage_language_layers={layers!r} must be between 1 and "
                f"{self.language.num_layers - 1} (the LLM has {self.language.num_layers} layers), or None"
            )
        if self.init_method_std <= 0:
            raise ValueError("VLModelConfig.init_method_std must be positive")

    def validate_parallel(self, parallel: ParallelConfig) -> None:
        """Raise ``ValueError`` naming the field to change when ``parallel`` cannot split this model."""
        tp = parallel.tensor_parallel
        fix_tp = "use a tensor-parallel size that divides it"
        for what, value in (
            ("vision.num_attention_heads", self.vision.num_attention_heads),
            ("vision.ffn_hidden_size", self.vision.ffn_hidden_size),
            ("projector.ffn_hidden_size", self.projector.ffn_hidden_size),
            ("language.num_attention_heads", self.language.num_attention_heads),
            ("language.num_query_groups", self.language.num_query_groups),
            ("language.ffn_hidden_size", self.language.ffn_hidden_size),
        ):
            _require_divisible(f"VLModelConfig.{what}", value, tp, "ParallelConfig.tensor_parallel", fix_tp)

        pp = parallel.pipeline_parallel
        layers = self.language.num_layers
        first = self.first_pipeline_stage_language_layers
        if pp == 1:
            if first is not None:
                raise ValueError(
                    "VLModelConfig.first_pipeline_stage_language_layers is set but pipeline_parallel is 1; "
                    "unset it or raise ParallelConfig.pipeline_parallel"
                )
            return
        if first is None:
            _require_divisible(
                "VLModelConfig.language.num_layers", layers, pp, "ParallelConfig.pipeline_parallel",
                "change pipeline_parallel, or set first_pipeline_stage_language_layers for an uneven split",
            )
        elif (layers - first) % (pp - 1):
            raise ValueError(
                f"with first_pipeline_stage_language_layers={first}, the other {layers - first} LLM layers do not "
                f"split evenly over the remaining {pp - 1} pipeline stages; change either number"
            )

    def layers_per_pipeline_stage(self, pipeline_parallel: int) -> list[int]:
        """LLM layers on each pipeline stage, first stage first."""
        layers = self.language.num_layers
        first = self.first_pipeline_stage_language_layers
        if pipeline_parallel == 1:
            return [layers]
        if first is None:
            return [layers // pipeline_parallel] * pipeline_parallel
        return [first] + [(layers - first) // (pipeline_parallel - 1)] * (pipeline_parallel - 1)


def mimo_vl_7b(*, image_token_id: int, **overrides) -> VLModelConfig:
    """MiMo-VL-7B: Qwen2.5-ViT (32 layers, 1280 wide), the 2x2 patch merger, and MiMo-7B (36 layers, 4096 wide).

    ``image_token_id`` comes from the tokenizer (151655 in the Qwen2 tokenizer); ``overrides`` set other
    ``VLModelConfig`` fields (e.g. ``dtype``, ``first_pipeline_stage_language_layers``).
    """
    vision = VisionConfig(
        num_layers=32,
        hidden_size=1280,
        num_attention_heads=16,
        ffn_hidden_size=3420,
        full_attention_layers=(7, 15, 23, 31),
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        rope_theta=10000.0,
        norm_eps=1e-6,
    )
    language = LanguageConfig(
        num_layers=36,
        hidden_size=4096,
        num_attention_heads=32,
        num_query_groups=8,
        ffn_hidden_size=11008,
        vocab_size=151680,
        mrope_section=(16, 24, 24),
        rope_theta=640000.0,
        max_position_embeddings=32768,
        norm_eps=1e-5,
    )
    projector = ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size, norm_eps=1e-6)
    return VLModelConfig(
        vision=vision, projector=projector, language=language, image_token_id=image_token_id, **overrides
    )


def tiny(*, image_token_id: int, **overrides) -> VLModelConfig:
    """The 7B structure (windowed + full ViT layers, GQA, M-RoPE, qkv bias) at a size that runs in seconds on CPU.

    vocab_size 4096 holds the demo tokenizer. ``image_token_id`` comes from the tokenizer.
    """
    vision = VisionConfig(
        num_layers=4,
        hidden_size=64,
        num_attention_heads=4,
        ffn_hidden_size=96,
        full_attention_layers=(1, 3),
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        rope_theta=10000.0,
        norm_eps=1e-6,
    )
    language = LanguageConfig(
        num_layers=4,
        hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=128,
        vocab_size=4096,
        mrope_section=(2, 3, 3),
        rope_theta=640000.0,
        max_position_embeddings=32768,
        norm_eps=1e-5,
    )
    projector = ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size, norm_eps=1e-6)
    return VLModelConfig(
        vision=vision, projector=projector, language=language, image_token_id=image_token_id, **overrides
    )
