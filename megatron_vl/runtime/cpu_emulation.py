"""Run megatron-core on CPU (gloo) by redirecting its CUDA calls.

megatron-core addresses the GPU directly in many places: ``device="cuda"`` or
``device=torch.cuda.current_device()`` when it allocates buffers, ``.cuda()`` on
modules and tensors, CUDA streams around communication, and the CUDA RNG state in
its model-parallel RNG tracker. On a machine without a GPU each of these fails.

``enable()`` makes all of them act on the CPU instead:

* a ``TorchFunctionMode`` rewrites every ``device=`` keyword (and the positional
  device of ``Tensor.to``) that names CUDA, or a bare device index, to ``cpu``;
* ``Tensor.cuda`` / ``Module.cuda`` become no-ops, and ``Tensor.type()`` names CPU tensors as CUDA
  ones (``torch.cuda.FloatTensor``): megatron's optimizers pick fp32 / bf16 handling by that name;
* the ``torch.cuda`` functions megatron calls get CPU stand-ins (``current_device``
  is 0, streams and events are inert context managers, the RNG state is the CPU
  generator's);
* megatron's RNG tracker saves and restores the CPU generator, so forked RNG
  regions (``get_cuda_rng_tracker().fork()``) behave as they do on a GPU;
* the backward of custom autograd Functions runs inside the same mode: the autograd
  engine calls it with an empty torch-function mode stack, and megatron allocates
  CUDA buffers there (e.g. the reduce-scatter of sequence-parallel linears).

``runtime.init_distributed`` switches it on when the run's platform has no GPU
(``Platform.cpu_emulation``); it is never switched on where a GPU is used. It is
process-global and idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import torch
from torch.overrides import TorchFunctionMode

_ENABLED = False
_LOCK = threading.Lock()
_MODE: "_CudaToCpuMode | None" = None


def is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    # A bare integer is a CUDA ordinal in torch's device arguments.
    return isinstance(device, int) and not isinstance(device, bool)


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to ``cpu`` for every torch function call."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs and is_cuda_device(kwargs["device"]):
            kwargs = dict(kwargs, device="cpu")
        if kwargs.get("pin_memory"):
            kwargs = dict(kwargs, pin_memory=False)
        if func is torch.Tensor.to and len(args) > 1 and is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class _InertStream:
    """Stands in for ``torch.cuda.Stream`` and ``torch.cuda.Event``: CPU work is synchronous."""

    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, *args, **kwargs):
        pass

    def wait_event(self, *args, **kwargs):
        pass

    def record_event(self, *args, **kwargs):
        return _InertStream()

    def record(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def wait(self, *args, **kwargs):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _cpu_rng_state(device=None, clone=False, graph_safe=False):
    return torch.get_rng_state()


def _set_cpu_rng_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


class _ForkedRngWarningFilter(logging.Filter):
    """On CPU the "CUDA" generator *is* the CPU generator, so megatron's check that the
    CPU RNG is untouched inside a forked CUDA RNG region always trips; it is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "CPU RNG state changed within GPU RNG context" not in record.getMessage()


def _cuda_type_name(original):
    def type_(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None and not kwargs:
            name = original(self)
            return name.replace("torch.", "torch.cuda.", 1) if not name.startswith("torch.cuda.") else name
        return original(self, dtype, non_blocking, **kwargs)

    return type_


def _patch_torch_cuda() -> None:
    cuda = torch.cuda
    cuda.current_device = lambda: 0
    cuda.set_device = lambda device: None
    cuda.device_count = lambda: 1
    cuda.synchronize = lambda device=None: None
    cuda.empty_cache = lambda: None
    cuda.Stream = _InertStream
    cuda.Event = _InertStream
    cuda.current_stream = lambda device=None: _InertStream()
    cuda.default_stream = lambda device=None: _InertStream()
    cuda.stream = lambda stream=None: contextlib.nullcontext()
    cuda.set_stream = lambda stream: None
    cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    cuda.set_rng_state = lambda new_state, device="cuda": torch.set_rng_state(new_state)
    # torch.manual_seed itself calls cuda.manual_seed_all: seed the generator, not torch.manual_seed.
    cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
    cuda.manual_seed_all = lambda seed: None
    cuda.memory_allocated = lambda device=None: 0
    cuda.max_memory_allocated = lambda device=None: 0
    cuda.memory_reserved = lambda device=None: 0
    cuda.max_memory_reserved = lambda device=None: 0
    cuda.reset_peak_memory_stats = lambda device=None: None
    cuda.memory_stats = lambda device=None: {}
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.type = _cuda_type_name(torch.Tensor.type)
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self


def _patch_megatron_rng() -> None:
    from megatron.core.tensor_parallel import random as megatron_random

    megatron_random._get_cuda_rng_state = _cpu_rng_state
    megatron_random._set_cuda_rng_state = _set_cpu_rng_state
    logging.getLogger(megatron_random.__name__).addFilter(_ForkedRngWarningFilter())


def _patch_custom_function_backward() -> None:
    from torch.autograd.function import BackwardCFunction

    for name in ("apply", "apply_boxed"):
        original = getattr(BackwardCFunction, name)

        def in_mode(self, *args, _original=original):
            with _CudaToCpuMode():
                return _original(self, *args)

        setattr(BackwardCFunction, name, in_mode)


def enable() -> None:
    """Redirect megatron-core's CUDA calls to the CPU, for this process, from now on."""
    global _ENABLED, _MODE
    with _LOCK:
        if _ENABLED:
            return
        _patch_torch_cuda()
        _patch_megatron_rng()
        _patch_custom_function_backward()
        _MODE = _CudaToCpuMode()
        _MODE.__enter__()
        _ENABLED = True
