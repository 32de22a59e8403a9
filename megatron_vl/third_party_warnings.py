"""Silence third-party warnings a user cannot act on, so the logs of a run show what matters.

Applied before megatron-core is imported (it warns while being imported): by the training entry point's
``main`` and by importing ``checkpoints_tools``, whose modules are all command-line tools.
"""

from __future__ import annotations

import warnings

_MESSAGES = (
    # megatron-core's optional fused kernels; without a GPU (or in a plain pip install) they are absent on purpose.
    r".*(Transformer Engine|Apex) (and Apex )?(is|are) not installed.*",
    # megatron-core 0.16's own use of torch APIs that torch has deprecated.
    r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated.*",
    r"`load_state_dict` is deprecated and will be removed.*",
    r"Please use DTensor instead and we are deprecating ShardedTensor.*",
    r"full scope is deprecated\. Use empty cuda_graph_scope.*",
)


def silence_known_third_party_warnings() -> None:
    for message in _MESSAGES:
        warnings.filterwarnings("ignore", message=message)
