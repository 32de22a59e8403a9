"""Checkpoints written the way training writes them, by megatron-core's own ``dist_checkpointing.save``.

``save_layouts`` runs in each of 4 gloo ranks: for every (TP, PP) asked for it builds ``VLModel`` at that layout
with the same full weights, saves ``{"model": model.sharded_state_dict()}`` per ``checkpoint_files`` (partial
directory, rename, latest marker), and returns the logits of a document from the last pipeline stage.
It also loads given checkpoints into a fresh model at TP=2, PP=2 and returns its parameters as full tensors.
"""

from __future__ import annotations

import os
import shutil

import torch
import torch.distributed as dist

from tests.models.vl_batches import build_model


def _save(model, config, parallel, root: str, iteration: int, tokenizer_path: str, image_settings) -> None:
    from megatron.core import dist_checkpointing

    from megatron_vl.files import publish_directory
    from megatron_vl.tokenizer import load_tokenizer
    from megatron_vl.training import checkpoint_files

    partial = checkpoint_files.partial_dir(root, iteration)
    if dist.get_rank() == 0:
        partial.mkdir(parents=True)
    dist.barrier()
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(partial))
    if dist.get_rank() == 0:
        tokenizer = load_tokenizer(tokenizer_path)
        tokenizer.save_hf(str(partial / checkpoint_files.TOKENIZER_DIR))
        checkpoint_files.write_run_record(partial, checkpoint_files.run_record(
            model=config, parallel=parallel, iteration=iteration, image_settings=image_settings,
            tokenizer_fingerprint=tokenizer.fingerprint, written_by="training",
        ))
        publish_directory(partial, checkpoint_files.iteration_dir(root, iteration))
        checkpoint_files.write_latest_iteration(root, iteration)
    dist.barrier()


def _full_parameters(model) -> dict[str, torch.Tensor]:
    """Every parameter of the whole model as a full tensor, gathered over TP and PP, on every rank."""
    from megatron_vl.models.sharding import gather_full_state_dict

    stage = gather_full_state_dict(model)
    stages = [None] * model.pg_collection.pp.size()
    dist.all_gather_object(stages, stage, group=model.pg_collection.pp)
    return {name: tensor for part in stages for name, tensor in part.items()}


def save_layouts(config, full_state_dict, document, layouts, root, tokenizer_path, image_settings, load_dirs=()):
    """See the module docstring. Returns ``{"logits": {(tp, pp): logits}, "loaded": {dir: full params}}``."""
    from megatron.core import dist_checkpointing

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    result = {"logits": {}, "loaded": {}}
    for tp, pp, first_stage_layers in layouts:
        parallel = ParallelConfig(tensor_parallel=tp, pipeline_parallel=pp, first_pipeline_stage_language_layers=first_stage_layers)
        pgs = initialize_model_parallel(parallel)
        set_seed(0, pgs)
        model = build_model(config, parallel, pgs, full_state_dict).eval()
        _save(model, config, parallel, os.path.join(root, f"tp{tp}_pp{pp}"), 1, tokenizer_path, image_settings)
        result["logits"][(tp, pp)] = _logits(model, pgs, document)
    parallel = ParallelConfig(tensor_parallel=2, pipeline_parallel=2)
    pgs = initialize_model_parallel(parallel)
    for directory in load_dirs:
        model = build_model(config, parallel, pgs)
        loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, directory)
        model.load_state_dict(loaded["model"])
        result["loaded"][directory] = _full_parameters(model)
    return result


def _logits(model, pgs, document):
    """Logits of ``document`` through the pipeline (stages hand hidden states on by send/recv)."""
    pp = pgs.pp
    with torch.no_grad():
        if pp.size() == 1:
            return model(**document)
        if pp.rank() == 0:
            hidden = model(**document)
            dist.send(hidden.contiguous(), dist.get_global_rank(pp, 1), group=pp)
            return None
        tokens = document["input_ids"].numel()
        hidden = torch.empty(tokens, 1, model.model_config.language.hidden_size)
        dist.recv(hidden, dist.get_global_rank(pp, 0), group=pp)
        model.set_input_tensor(hidden)
        return model(None, document["position_ids"])


def remove_checkpoint_root(root: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
