"""Where a run executes (``platform``), its process groups (``distributed``, ``model_parallel``), and the CPU
emulation that lets megatron-core run without a GPU (``cpu_emulation``).

Import from the modules: ``platform`` is light (the training entry point reads it before torch is imported);
the others import torch and megatron-core.
"""
