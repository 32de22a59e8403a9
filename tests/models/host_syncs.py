"""Record the calls that would make the host wait for the GPU, in forward and in backward.

On the CPU nothing waits, so the calls themselves are recorded: every op that copies a device value to the
host (``.item()``, ``int()`` / ``float()`` / ``bool()`` of a tensor, ``.tolist()``) or whose output size
depends on tensor values (``nonzero``, ``unique``, boolean-mask indexing, ...). A ``TorchDispatchMode`` sees
the aten ops, including those autograd runs in backward; ``Tensor.tolist`` and ``Tensor.numpy`` dispatch no op
on the CPU, so they are patched for the duration.
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_VALUE_DEPENDENT = {
    _aten._local_scalar_dense.default,  # item(), int(), float(), bool() of a tensor
    _aten.is_nonzero.default,
    _aten.equal.default,
    _aten.nonzero.default,
    _aten.masked_select.default,
    _aten._unique2.default,
    _aten.unique_dim.default,
    _aten.unique_consecutive.default,
}


def _syncs(func, args, kwargs) -> bool:
    if func in _VALUE_DEPENDENT:
        return True
    if func is _aten.index.Tensor:
        return any(index is not None and index.dtype in (torch.bool, torch.uint8) for index in args[1])
    if func is _aten.repeat_interleave.Tensor:
        return kwargs.get("output_size") is None
    return False


class _Recorder(TorchDispatchMode):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _syncs(func, args, kwargs):
            self.calls.append(_describe(str(func)))
        return func(*args, **kwargs)


def _describe(name: str) -> str:
    """``name`` with the innermost caller outside torch, so a failing test says where the sync is."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not any(part in frame.filename for part in ("/torch/", "host_syncs", "cpu_emulation")):
            return f"{name} at {frame.filename}:{frame.lineno} ({frame.name})"
    return name


@contextlib.contextmanager
def record_host_syncs():
    """``with record_host_syncs() as calls:`` fills ``calls`` with one description per host-synchronising call."""
    calls: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    inside = []  # a torch-function mode (the CPU emulation's) calls the patched method again from within

    def patched(name):
        def call(tensor, *args, **kwargs):
            if inside:
                return originals[name](tensor, *args, **kwargs)
            calls.append(_describe(f"Tensor.{name}"))
            inside.append(name)
            try:
                return originals[name](tensor, *args, **kwargs)
            finally:
                inside.pop()

        return call

    for name in originals:
        setattr(torch.Tensor, name, patched(name))
    try:
        with _Recorder(calls):
            yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
