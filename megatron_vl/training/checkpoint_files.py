"""The files of a run's checkpoints on disk: the contract between training and ``checkpoints_tools``.

::

    CHECKPOINT_ROOT/
        latest_checkpointed_iteration.txt   the newest complete iteration; written last, atomically
        iter_0001200/                       one megatron-core ``dist_checkpointing`` checkpoint
            megatron_vl_run.json            the resolved run: model config, parallel layout, stage, ...
            tokenizer/                      the tokenizer the run trained with (HF tokenizer.json layout)
            ...                             dist_checkpointing's own files (metadata.json, *.distcp, common.pt)
        iter_0001400.partial/               a save in progress (or one cut off by a crash): never loaded

Inside the dist checkpoint, the model's tensors are stored under the keys of
``VLModel.sharded_state_dict()`` (no prefix), in the ``model`` entry of the saved state dict; other
entries (``optimizer``, ``scheduler``, ``loader``, ``rng``, ...) belong to training. A checkpoint that
holds only ``model`` (what ``checkpoints_tools.from_hf`` writes) is a valid starting point for a stage.

The run record (``megatron_vl_run.json``, built by ``run_record``, read by ``read_run_record``) holds at least:

* ``format_version``: 2 (version 1 kept ``first_pipeline_stage_language_layers`` in ``model``; it is read as
  version 2 with the field moved into ``parallel``);
* ``model``: ``config_to_dict(VLModelConfig)``, enough to rebuild the model at any layout;
* ``parallel``: ``config_to_dict(ParallelConfig)`` of the ranks that saved it (their pipeline split included);
* ``iteration``: the iteration number;
* ``image_settings``: ``dataclasses.asdict(ImageSettings)`` of the data the model saw (for the HF processor);
* ``tokenizer_fingerprint``: the fingerprint of ``tokenizer/`` (None when no tokenizer is stored);
* ``written_by``: ``"training"`` or ``"checkpoints_tools.from_hf"``; training adds its own fields
  (stage, consumed tokens per kind, the resolved recipe).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from megatron_vl.config.model import VLModelConfig
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.serialization import config_to_dict
from megatron_vl.data.images import ImageSettings
from megatron_vl.files import partial_directory, read_json_object, write_atomically

LATEST_FILE = "latest_checkpointed_iteration.txt"
RUN_FILE = "megatron_vl_run.json"
RUN_RECORD_FORMAT = 2
TOKENIZER_DIR = "tokenizer"
_ITERATION_DIR = re.compile(r"iter_(\d{7,})")


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def partial_dir(root: str | Path, iteration: int) -> Path:
    """Where a save of ``iteration`` is written before it is renamed into place (``files.publish_directory``)."""
    return partial_directory(iteration_dir(root, iteration))


def complete_iterations(root: str | Path) -> list[int]:
    """Iterations with a complete checkpoint directory under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _ITERATION_DIR.fullmatch(entry.name)
        if match and (entry / RUN_FILE).is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def read_latest_iteration(root: str | Path) -> int | None:
    """The iteration the ``latest`` marker names, or None when ``root`` holds no checkpoint yet."""
    marker = Path(root) / LATEST_FILE
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    if not text.isdigit():
        raise ValueError(f"{marker} should hold an iteration number, found {text!r}; delete it or fix it by hand")
    return int(text)


def write_latest_iteration(root: str | Path, iteration: int) -> None:
    """Point the ``latest`` marker at ``iteration``; atomic, so a crash leaves the previous marker."""
    write_atomically(Path(root) / LATEST_FILE, f"{iteration}\n".encode())


def resolve_checkpoint(root: str | Path, iteration: int | None = None) -> tuple[Path, int]:
    """The directory of ``iteration`` (default: the ``latest`` marker's) and its iteration number."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"checkpoint directory {root} does not exist")
    if iteration is None:
        iteration = read_latest_iteration(root)
        if iteration is None:
            raise ValueError(
                f"{root} has no {LATEST_FILE}: it is not a megatron-vl checkpoint directory, or no save finished"
            )
    directory = iteration_dir(root, iteration)
    if not (directory / RUN_FILE).is_file():
        available = complete_iterations(root)
        raise ValueError(f"{root} has no complete checkpoint for iteration {iteration}; available: {available}")
    return directory, iteration


def read_run_record(checkpoint_dir: str | Path) -> dict:
    """The run record (``megatron_vl_run.json``) saved with one checkpoint."""
    record = read_json_object(
        Path(checkpoint_dir) / RUN_FILE,
        if_missing=f"{checkpoint_dir} is not a complete megatron-vl checkpoint",
        if_corrupt="the checkpoint is corrupt",
    )
    if record.get("format_version") == 1:
        record = _version_2_of(record)
    return record


def _version_2_of(record: dict) -> dict:
    """A version-1 record as version 2: the pipeline split moves from the model config to the parallel layout."""
    model = dict(record.get("model", {}))
    first_stage_layers = model.pop("first_pipeline_stage_language_layers", None)
    parallel = dict(record.get("parallel", {}))
    parallel.setdefault("first_pipeline_stage_language_layers", first_stage_layers)
    return {**record, "format_version": 2, "model": model, "parallel": parallel}


def run_record(
    *,
    model: VLModelConfig,
    parallel: ParallelConfig,
    iteration: int,
    image_settings: ImageSettings,
    tokenizer_fingerprint: str | None,
    written_by: str,
    **extra,
) -> dict:
    """The run record of a checkpoint: the fields every reader relies on (see the module docstring),
    then the writer's own ``extra`` fields."""
    return {
        "format_version": RUN_RECORD_FORMAT,
        "model": config_to_dict(model),
        "parallel": config_to_dict(parallel),
        "iteration": iteration,
        "image_settings": image_settings.to_dict(),
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "written_by": written_by,
        **extra,
    }


def write_run_record(checkpoint_dir: str | Path, record: dict) -> None:
    (Path(checkpoint_dir) / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
