"""The model config's ``init_method_std`` reaches the random weights of every part (ViT, projector, LLM).

``tiny`` initialises at std 0.1 where the 7B uses 0.02 (see ``megatron_vl.config.model.tiny``); a part that kept
megatron's default would train the demo with near-uniform attention again.
"""

from __future__ import annotations

from tests.models.vl_batches import tiny_config
from tests.multirank import run_ranks

# Input-side matrices: megatron draws them at init_method_std (output-side ones are scaled down by the depth).
INPUT_SIDE = ("linear_qkv.weight", "linear_fc1.weight", "patch_embed.weight")


def _weight_stds(init_method_std: float | None) -> dict[str, float]:
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform

    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    overrides = {} if init_method_std is None else {"init_method_std": init_method_std}
    model = VLModel(tiny_config(**overrides), parallel=parallel, pg_collection=pgs, platform=detect_platform())
    return {name: float(param.std()) for name, param in model.named_parameters() if name.endswith(INPUT_SIDE)}


def test_every_part_is_drawn_at_the_configs_std():
    for init_method_std, expected in ((None, 0.1), (0.02, 0.02)):
        stds = run_ranks(_weight_stds, 1, init_method_std)[0]
        assert {name.split(".")[0] for name in stds} == {"vision_model", "vision_projection", "language_model"}, sorted(stds)
        assert any(name.endswith("patch_embed.weight") for name in stds), sorted(stds)
        for name, std in stds.items():
            assert abs(std - expected) < 0.15 * expected, (name, std, expected)
