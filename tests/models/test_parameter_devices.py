"""Every parameter and buffer of the model is created on the GPU when the run uses one.

Nothing moves the model after it is built (megatron's DDP moves only trainable parameters, and only into its
buffers with the distributed optimizer), so a module created on the host breaks the first GPU forward.
Without a GPU the check runs under the CPU emulation: ``IntendedDevice`` follows every tensor megatron or we
ask to create on CUDA (``device=`` arguments, ``.to(cuda)``, ``.cuda()``) and every tensor computed only from
such tensors, as it would be on a GPU; a parameter or buffer outside that set would be on the host.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from megatron_vl.runtime.cpu_emulation import is_cuda_device
from tests.models.vl_batches import tiny_config
from tests.multirank import run_ranks


class IntendedDevice(TorchFunctionMode):
    """Records the storages of tensors that would live on the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.on_gpu: set[int] = set()

    def mark(self, tensor: torch.Tensor) -> torch.Tensor:
        self.on_gpu.add(tensor.untyped_storage().data_ptr())
        return tensor

    def is_on_gpu(self, tensor: torch.Tensor) -> bool:
        return tensor.untyped_storage().data_ptr() in self.on_gpu

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        if func is torch.Tensor.to and len(args) > 1 and isinstance(args[1], (torch.device, str, int)):
            device = args[1]
        inputs = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor) and x.numel()]
        result = func(*args, **kwargs)
        if device is not None:
            on_gpu = is_cuda_device(device)
        else:
            on_gpu = any(self.is_on_gpu(x) for x in inputs)
        if on_gpu:
            for output in tree_flatten(result)[0]:
                if isinstance(output, torch.Tensor) and output.numel():
                    self.mark(output)
        return result


def _host_tensors_of_model_built_for_gpu(parallel_kwargs: dict) -> list[str]:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import Platform

    parallel = ParallelConfig(**parallel_kwargs)
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    gpu = Platform(device="cuda", device_name="emulated GPU", layer_backend="local")
    recorder = IntendedDevice()
    emulated_cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: recorder.mark(emulated_cuda(self, *args, **kwargs))
    try:
        with recorder:
            model = VLModel(tiny_config(), parallel=parallel, pg_collection=pgs, platform=gpu)
    finally:
        torch.Tensor.cuda = emulated_cuda
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert len(tensors) > 50 and any(recorder.is_on_gpu(t) for _, t in tensors), "the recorder saw the model"
    return [name for name, tensor in tensors if tensor.numel() and not recorder.is_on_gpu(tensor)]


def test_every_parameter_and_buffer_is_created_on_the_gpu():
    assert run_ranks(_host_tensors_of_model_built_for_gpu, 1, {})[0] == []


def test_every_parameter_and_buffer_is_created_on_the_gpu_with_tensor_and_sequence_parallelism():
    results = run_ranks(_host_tensors_of_model_built_for_gpu, 2, {"tensor_parallel": 2, "sequence_parallel": True})
    assert results == [[], []]
