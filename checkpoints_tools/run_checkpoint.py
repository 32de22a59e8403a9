"""One checkpoint of a run, as ``megatron_vl/training/checkpoint_files.py`` lays it out: its directory,
run record, model config, image settings and tokenizer."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from megatron_vl.config.model import VLModelConfig, saved_model_fields
from megatron_vl.config.serialization import config_from_dict
from megatron_vl.data.images import ImageSettings
from megatron_vl.tokenizer import Tokenizer, load_tokenizer
from megatron_vl.training import checkpoint_files


@dataclasses.dataclass(frozen=True)
class RunCheckpoint:
    directory: Path
    """The iteration directory (the dist checkpoint itself)."""
    iteration: int
    record: dict
    """The run record (``megatron_vl_run.json``)."""
    config: VLModelConfig
    image_settings: ImageSettings
    tokenizer: Tokenizer


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt`` and ``--iteration``, which ``open_run_checkpoint`` takes, for every tool that reads a checkpoint."""
    parser.add_argument(
        "--ckpt", required=True,
        help=f"checkpoint root (with {checkpoint_files.LATEST_FILE}) or one iter_* directory",
    )
    parser.add_argument("--iteration", type=int, help="iteration of the checkpoint root to read (default: the latest)")


def open_run_checkpoint(path: str | Path, iteration: int | None = None, tokenizer: str | Path | None = None) -> RunCheckpoint:
    """``path`` is a checkpoint root (the ``latest`` iteration, or ``iteration``) or one iteration directory.

    ``tokenizer`` replaces the tokenizer stored in the checkpoint (needed when the run stored none).
    """
    path = Path(path)
    if (path / checkpoint_files.RUN_FILE).is_file():
        directory = path
    else:
        directory, iteration = checkpoint_files.resolve_checkpoint(path, iteration)
    record = checkpoint_files.read_run_record(directory)
    run_file = directory / checkpoint_files.RUN_FILE
    for field in ("model", "image_settings"):
        if field not in record:
            raise ValueError(f"{run_file} has no {field!r}; it was not written by megatron-vl training or from_hf")
    settings = ImageSettings.from_dict(record["image_settings"])
    stored = directory / checkpoint_files.TOKENIZER_DIR
    if tokenizer is None:
        if not stored.is_dir():
            raise ValueError(f"{directory} stores no tokenizer; pass --tokenizer with the tokenizer the run trained with")
        loaded = load_tokenizer(stored)
        if record.get("tokenizer_fingerprint") not in (None, loaded.fingerprint):
            raise ValueError(
                f"{stored} does not match the fingerprint in {run_file}; the checkpoint is corrupt: pass --tokenizer"
            )
    else:
        loaded = load_tokenizer(tokenizer)
    saved = saved_model_fields(record["model"], video_pad_id=loaded.video_pad_id)
    config = config_from_dict(VLModelConfig, saved, where=f"{run_file} model")
    for field, token, tokenizer_id in (
        ("image_token_id", "<|image_pad|>", loaded.image_pad_id),
        ("video_token_id", "<|video_pad|>", loaded.video_pad_id),
    ):
        if tokenizer_id != getattr(config, field):
            raise ValueError(
                f"the tokenizer's {token} is id {tokenizer_id} but the model was trained with "
                f"{field} {getattr(config, field)}; use the tokenizer the run trained with"
            )
    return RunCheckpoint(directory, int(record.get("iteration", iteration or 0)), record, config, settings, loaded)
