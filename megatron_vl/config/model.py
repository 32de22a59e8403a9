"""Model configs: the Qwen2.5-ViT encoder, the patch-merger projector, the M-RoPE LLM, and their composition.

Presets live in ``PRESETS`` (``model_preset(name, ...)`` builds one): ``mimo_vl_7b`` (the MiMo-VL-7B shape
of DESIGN.md) and ``tiny`` (the same structure at a size that runs in seconds on a CPU). Each config checks
itself on construction; ``VLModelConfig.validate_parallel`` checks that a parallel layout can split the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.validation import divisible, one_of, positive_int, positive_number

DTYPES = ("float32", "bfloat16")


def _positive_ints(owner: str, config, names: tuple[str, ...]) -> None:
    for name in names:
        positive_int(owner, name, getattr(config, name))


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
        _positive_ints("VisionConfig", self, (
            "num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "patch_size", "temporal_patch_size",
            "in_channels", "spatial_merge_size", "window_size", "tokens_per_second",
        ))
        positive_number("VisionConfig", "norm_eps", self.norm_eps)
        positive_number("VisionConfig", "rope_theta", self.rope_theta)
        divisible(
            "VisionConfig.hidden_size", self.hidden_size, self.num_attention_heads, "num_attention_heads",
            "choose a hidden size that is a multiple of the head count",
        )
        if self.head_dim % 4:
            raise ValueError(
                f"VisionConfig head dim {self.head_dim} (hidden_size / num_attention_heads) must be a multiple "
                "of 4: the 2D rotary gives a quarter of each head's dimensions to each of h and w, in pairs"
            )
        unit = self.patch_size * self.spatial_merge_size
        divisible(
            "VisionConfig.window_size", self.window_size, unit, "patch_size * spatial_merge_size",
            f"use a window of a whole number of merged patches, e.g. {unit * max(1, self.window_size // unit)}",
        )
        layers = tuple(self.full_attention_layers)
        if list(layers) != sorted(set(layers)) or any(not 0 <= i < self.num_layers for i in layers):
            raise ValueError(
                f"VisionConfig.full_attention_layers={layers!r} must be increasing, distinct layer indices in "
                f"[0, {self.num_layers}); e.g. {tuple(range(7, self.num_layers, 8))} for every 8th layer"
            )

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
        positive_int("ProjectorConfig", "ffn_hidden_size", self.ffn_hidden_size)
        positive_number("ProjectorConfig", "norm_eps", self.norm_eps)


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
        _positive_ints("LanguageConfig", self, (
            "num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "ffn_hidden_size", "vocab_size",
            "max_position_embeddings",
        ))
        positive_number("LanguageConfig", "norm_eps", self.norm_eps)
        positive_number("LanguageConfig", "rope_theta", self.rope_theta)
        divisible(
            "LanguageConfig.hidden_size", self.hidden_size, self.num_attention_heads, "num_attention_heads",
            "choose a hidden size that is a multiple of the head count",
        )
        divisible(
            "LanguageConfig.num_attention_heads", self.num_attention_heads, self.num_query_groups,
            "num_query_groups", "each key/value group must serve the same number of query heads",
        )
        section = tuple(self.mrope_section)
        if len(section) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in section):
            raise ValueError(
                f"LanguageConfig.mrope_section={section!r} must be three positive integers (t, h, w)"
            )
        if sum(section) != self.head_dim // 2:
            raise ValueError(
                f"LanguageConfig.mrope_section={section!r} sums to {sum(section)}, but the head dim "
                f"{self.head_dim} has {self.head_dim // 2} rotary pairs; make the sections sum to {self.head_dim // 2}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tensor_parallel: int) -> int:
        """Rows of the embedding and output layer: ``vocab_size`` rounded up to a multiple of TP."""
        return -(-self.vocab_size // tensor_parallel) * tensor_parallel


@dataclasses.dataclass(frozen=True, kw_only=True)
class VLModelConfig:
    """The whole model: ViT -> projector -> LLM, with the image and video placeholders the LLM's input carries."""

    vision: VisionConfig
    """The vision encoder."""
    projector: ProjectorConfig
    """The patch merger between the encoder and the LLM."""
    language: LanguageConfig
    """The decoder LLM."""
    image_token_id: int
    """Id of ``<|image_pad|>`` in the tokenizer: each one is replaced by one projector output of an image, in order."""
    video_token_id: int
    """Id of ``<|video_pad|>`` in the tokenizer: each one is replaced by one projector output of a video, in order."""
    dtype: str = "float32"
    """Parameter and activation dtype, ``float32`` or ``bfloat16``."""
    init_method_std: float = 0.02
    """Standard deviation of the normal initialisation of weight matrices."""

    def __post_init__(self) -> None:
        for name, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.language.vocab_size:
                raise ValueError(
                    f"VLModelConfig.{name}={value!r} is not a token id below vocab_size "
                    f"{self.language.vocab_size}; pass the tokenizer's id of {token}"
                )
        if self.video_token_id == self.image_token_id:
            raise ValueError(
                f"VLModelConfig.video_token_id and image_token_id are both {self.image_token_id}; pass the tokenizer's "
                "distinct ids of <|video_pad|> and <|image_pad|>"
            )
        one_of("VLModelConfig", "dtype", self.dtype, DTYPES)
        positive_number("VLModelConfig", "init_method_std", self.init_method_std)

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
            divisible(f"VLModelConfig.{what}", value, tp, "ParallelConfig.tensor_parallel", fix_tp)
        if parallel.context_parallel_comm == "a2a":
            for what, value in (("language.num_attention_heads", self.language.num_attention_heads),
                                ("language.num_query_groups", self.language.num_query_groups)):
                divisible(f"VLModelConfig.{what} / tensor_parallel", value // tp, parallel.context_parallel,
                          "ParallelConfig.context_parallel", "the a2a exchange splits each TP rank's heads over CP; "
                          "use context_parallel_comm='p2p' or a CP size that divides them")

        pp = parallel.pipeline_parallel
        layers = self.language.num_layers
        first = parallel.first_pipeline_stage_language_layers
        if pp == 1:
            return
        if first is None:
            divisible(
                "VLModelConfig.language.num_layers", layers, pp, "ParallelConfig.pipeline_parallel",
                "change pipeline_parallel, or set first_pipeline_stage_language_layers for an uneven split",
            )
        elif not first < layers:
            raise ValueError(
                f"ParallelConfig.first_pipeline_stage_language_layers={first} must be below the LLM's {layers} layers, "
                "so that the other pipeline stages get some"
            )
        elif (layers - first) % (pp - 1):
            raise ValueError(
                f"with first_pipeline_stage_language_layers={first}, the other {layers - first} LLM layers do not "
                f"split evenly over the remaining {pp - 1} pipeline stages; change either number"
            )

    def layers_per_pipeline_stage(self, parallel: ParallelConfig) -> list[int]:
        """LLM layers on each pipeline stage of ``parallel``, first stage first."""
        layers = self.language.num_layers
        pp = parallel.pipeline_parallel
        first = parallel.first_pipeline_stage_language_layers
        if pp == 1:
            return [layers]
        if first is None:
            return [layers // pp] * pp
        return [first] + [(layers - first) // (pp - 1)] * (pp - 1)


def mimo_vl_7b(*, image_token_id: int, video_token_id: int, **overrides) -> VLModelConfig:
    """MiMo-VL-7B: Qwen2.5-ViT (32 layers, 1280 wide), the 2x2 patch merger, and MiMo-7B (36 layers, 4096 wide).

    ``image_token_id`` and ``video_token_id`` come from the tokenizer (151655 and 151656 in the Qwen2 tokenizer);
    ``overrides`` set other
    ``VLModelConfig`` fields (e.g. ``dtype``). Fields not named here keep Qwen2.5-VL's defaults.
    """
    vision = VisionConfig(
        num_layers=32, hidden_size=1280, num_attention_heads=16, ffn_hidden_size=3420, full_attention_layers=(7, 15, 23, 31)
    )
    language = LanguageConfig(
        num_layers=36, hidden_size=4096, num_attention_heads=32, num_query_groups=8, ffn_hidden_size=11008,
        vocab_size=151680, mrope_section=(16, 24, 24), rope_theta=640000.0, norm_eps=1e-5,
    )
    return _compose(vision, language, image_token_id=image_token_id, video_token_id=video_token_id, **overrides)


def tiny(*, image_token_id: int, video_token_id: int, **overrides) -> VLModelConfig:
    """``mimo_vl_7b`` at a size that runs in seconds on CPU: only the sizes and the init differ (windowed and full
    ViT layers, GQA, M-RoPE, qkv bias, rotary bases and norms are the 7B's). vocab_size 4096 holds the demo tokenizer.

    init_method_std is 0.1, not the 7B's 0.02: at width 64, weights of std 0.02 make every attention logit near
    zero at init, and the attention stayed near-uniform through the demo's budget (after the text warm-up, the
    shape word of a grounding query did not move the prediction of its label). With 0.1 the warm-up's loss
    after 200 steps fell from 1.44 to 0.83, and the labels follow the query (README "The demo's scores")."""
    full = mimo_vl_7b(image_token_id=0, video_token_id=1)
    vision = dataclasses.replace(
        full.vision, num_layers=4, hidden_size=64, num_attention_heads=4, ffn_hidden_size=96, full_attention_layers=(1, 3)
    )
    language = dataclasses.replace(
        full.language, num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128,
        vocab_size=4096, mrope_section=(2, 3, 3),
    )
    return _compose(
        vision, language, image_token_id=image_token_id, video_token_id=video_token_id,
        **{"init_method_std": 0.1, **overrides},
    )


def _compose(vision: VisionConfig, language: LanguageConfig, **fields) -> VLModelConfig:
    """The whole model around ``vision`` and ``language``, with HF's merger (as wide as its concatenated input)."""
    projector = ProjectorConfig(ffn_hidden_size=vision.merged_hidden_size)
    return VLModelConfig(vision=vision, projector=projector, language=language, **fields)


PRESETS: dict[str, Callable[..., VLModelConfig]] = {"tiny": tiny, "mimo_vl_7b": mimo_vl_7b}
"""Every model preset by name: ``PRESETS[name](image_token_id=..., video_token_id=..., **VLModelConfig overrides)``."""


def model_preset(name: str, *, image_token_id: int, video_token_id: int, **overrides) -> VLModelConfig:
    """The preset ``name`` for a tokenizer whose ``<|image_pad|>`` is ``image_token_id`` and ``<|video_pad|>``
    is ``video_token_id``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: choose one of {sorted(PRESETS)}")
    return PRESETS[name](image_token_id=image_token_id, video_token_id=video_token_id, **overrides)


def saved_model_fields(saved: dict, *, video_pad_id: int) -> dict:
    """The ``VLModelConfig`` fields of a saved run record's ``model`` object, upgraded to the current config.

    Records saved before the model took videos have no ``video_token_id``; every tokenizer of this project has
    ``<|video_pad|>``, so it is ``video_pad_id``, the id of the tokenizer the record's run trained with.
    """
    return {"video_token_id": video_pad_id, **saved}
