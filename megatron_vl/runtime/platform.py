"""Where a run executes, decided once at start and kept in the run config: the device, the layer backend
(Transformer Engine or megatron-core's local modules), the collective backend, whether megatron-core's CUDA
calls are redirected to the CPU, and the accelerator's peak FLOP/s.

``detect_platform()`` is the only place that asks torch whether a GPU is present; everything else reads the
``Platform`` it returns (the run config holds it, tools detect it once at their start). The layer backend is a
setting (``--layer-backend`` or ``MVL_LAYER_BACKEND``: ``auto``, ``transformer_engine``, ``local``) and a GPU
without Transformer Engine is an error under ``auto``, never a silent switch to the slower local layers.
"""

from __future__ import annotations

import dataclasses
import os

from megatron_vl.config.validation import one_of

DEVICES = ("cuda", "cpu")
LAYER_BACKENDS = ("transformer_engine", "local")
LAYER_BACKEND_SETTINGS = ("auto", *LAYER_BACKENDS)
"""What a user may ask for: ``auto`` is Transformer Engine on a GPU, the local modules on the CPU."""
LAYER_BACKEND_ENVIRONMENT = "MVL_LAYER_BACKEND"
"""The environment variable the launch scripts and tools read the setting from (default ``auto``)."""

DENSE_BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "B200": 2250e12}
"""Dense bf16 peak FLOP/s of one accelerator, by a part of its name; the MFU denominator."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Platform:
    """What this machine runs the model with."""

    device: str
    """``cuda`` or ``cpu``: where parameters, activations and batches live."""
    device_name: str
    """The accelerator's name (``NVIDIA H200``), or ``cpu``."""
    layer_backend: str
    """``transformer_engine`` (TE modules, flash / cuDNN attention) or ``local`` (megatron-core's local modules
    with our packed attention and RMSNorm); ``models/specs.py`` builds the layers from it."""
    peak_flops: float | None = None
    """Dense bf16 peak FLOP/s of one accelerator, the MFU denominator; None when unknown (no MFU is reported)."""

    def __post_init__(self) -> None:
        one_of("Platform", "device", self.device, DEVICES)
        one_of("Platform", "layer_backend", self.layer_backend, LAYER_BACKENDS)
        if self.layer_backend == "transformer_engine" and self.device != "cuda":
            raise ValueError("Platform: the transformer_engine layer backend needs a GPU; use layer_backend='local'")

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def collective_backend(self) -> str:
        """torch.distributed's backend: NCCL between GPUs, gloo between CPU processes."""
        return "nccl" if self.on_gpu else "gloo"

    @property
    def cpu_emulation(self) -> bool:
        """megatron-core's CUDA calls are redirected to the CPU (``runtime/cpu_emulation.py``)."""
        return not self.on_gpu

    @property
    def use_cpu_initialization(self) -> bool:
        """megatron initialises weights on the CPU (whole matrices, then this rank's slice) rather than each
        shard on the GPU with the TP RNG."""
        return not self.on_gpu

    def describe(self) -> str:
        """One line for the log."""
        peak = f"peak {self.peak_flops / 1e12:.0f} TFLOP/s bf16" if self.peak_flops else "peak FLOP/s unknown (no MFU)"
        emulation = ", megatron-core's CUDA calls emulated on the CPU" if self.cpu_emulation else ""
        return (
            f"{self.device} ({self.device_name}), {self.layer_backend} layers, {self.collective_backend} collectives"
            f"{emulation}, {peak}"
        )


def peak_flops_of(device_name: str) -> float | None:
    """The dense bf16 peak of an accelerator named ``device_name``, if it is one we know."""
    for part, flops in DENSE_BF16_PEAK_FLOPS.items():
        if part in device_name:
            return flops
    return None


def transformer_engine_error() -> str | None:
    """Why Transformer Engine's megatron modules cannot be used, or None when they can."""
    try:
        import megatron.core.extensions.transformer_engine  # noqa: F401
        import transformer_engine.pytorch  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def choose_layer_backend(requested: str, *, on_gpu: bool, transformer_engine_error: str | None) -> str:
    """The layer backend for a ``requested`` setting (``auto``, ``transformer_engine`` or ``local``).

    ``auto`` is Transformer Engine on a GPU and the local modules on the CPU. A GPU run never falls back to the
    local modules by itself: they attend segment by segment in a Python loop, so a cluster job that lost its
    TE install would run many times slower without saying so.
    """
    if requested not in LAYER_BACKEND_SETTINGS:
        raise ValueError(
            f"layer backend {requested!r} (--layer-backend / {LAYER_BACKEND_ENVIRONMENT}): choose one of "
            f"{', '.join(LAYER_BACKEND_SETTINGS)}"
        )
    if requested == "local":
        return "local"
    if not on_gpu:
        if requested == "transformer_engine":
            raise ValueError(
                "layer backend transformer_engine needs a GPU and none is visible here; use --layer-backend auto "
                "or local (MVL_LAYER_BACKEND) on CPU machines"
            )
        return "local"
    if transformer_engine_error is not None:
        raise ValueError(
            f"layer backend {requested}: Transformer Engine does not import on this GPU machine "
            f"({transformer_engine_error}); install it (pip install -e '.[gpu]', or run in the NGC PyTorch container), "
            "or choose megatron-core's local layers explicitly with --layer-backend local (MVL_LAYER_BACKEND=local: "
            "slower, the same checkpoints)"
        )
    return "transformer_engine"


def detect_platform(layer_backend: str | None = None) -> Platform:
    """This machine's platform: the first GPU when one is visible, the CPU otherwise; the layer backend as
    ``layer_backend`` asks (``choose_layer_backend``; None: ``$MVL_LAYER_BACKEND``, else ``auto``)."""
    import torch

    if layer_backend is None:
        layer_backend = os.environ.get(LAYER_BACKEND_ENVIRONMENT, "auto")
    if not torch.cuda.is_available():
        backend = choose_layer_backend(layer_backend, on_gpu=False, transformer_engine_error=None)
        return Platform(device="cpu", device_name="cpu", layer_backend=backend)
    name = torch.cuda.get_device_name(0)
    error = transformer_engine_error() if layer_backend != "local" else None
    backend = choose_layer_backend(layer_backend, on_gpu=True, transformer_engine_error=error)
    return Platform(device="cuda", device_name=name, layer_backend=backend, peak_flops=peak_flops_of(name))
