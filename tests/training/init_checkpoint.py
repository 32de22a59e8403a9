"""A model-only checkpoint as ``checkpoints_tools.from_hf`` writes it (the contract of ``checkpoint_files``),
of the ``tiny`` model with seeded random weights: the starting point of stage 1 in the tests."""

from __future__ import annotations

from pathlib import Path

from megatron_vl.training import checkpoint_files


def write_init_checkpoint(root: str, tokenizer_path: str, seed: int) -> dict:
    """Runs on one rank (``run_ranks(write_init_checkpoint, 1, ...)``); returns the full TP=1 weights."""
    from megatron.core import dist_checkpointing

    from megatron_vl.config.model import tiny
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.data.images import ImageSettings
    from megatron_vl.models import VLModel
    from megatron_vl.models.sharding import gather_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform
    from megatron_vl.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    config = tiny(image_token_id=tokenizer.image_pad_id, video_token_id=tokenizer.video_pad_id)
    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(seed, pgs)
    model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=detect_platform())
    directory = checkpoint_files.iteration_dir(root, 0)
    directory.mkdir(parents=True)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(directory))
    tokenizer.save_hf(str(directory / checkpoint_files.TOKENIZER_DIR))
    checkpoint_files.write_run_record(directory, checkpoint_files.run_record(
        model=config, parallel=parallel, iteration=0, image_settings=ImageSettings(),
        tokenizer_fingerprint=tokenizer.fingerprint, written_by="checkpoints_tools.from_hf",
    ))
    checkpoint_files.write_latest_iteration(root, 0)
    return {name: tensor.clone() for name, tensor in gather_full_state_dict(model).items()}


def checkpoint_tensors(directory: Path) -> dict:
    """Every tensor of a dist checkpoint, whole (any layout it was saved at), by its checkpoint key."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    converted = directory.parent / f"{directory.name}.pt"
    dcp_to_torch_save(str(directory), str(converted))
    tensors = torch.load(converted, weights_only=False)
    converted.unlink()
    return tensors
