"""The files of a Hugging Face model folder besides the weights: model, generation and image-processor
configs, tokenizer and chat template, written as ``from_pretrained`` of ``Qwen2_5_VLForConditionalGeneration``,
``AutoTokenizer`` and ``AutoProcessor`` read them, and read back (the mapping itself is ``models/hf_config.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from checkpoints_tools.chat_template import CHAT_TEMPLATE
from megatron_vl.config.model import VLModelConfig
from megatron_vl.data.images import ImageSettings
from megatron_vl.files import read_json_object
from megatron_vl.models.hf_config import image_settings_from_hf, to_hf_config, to_hf_preprocessor_config
from megatron_vl.tokenizer import Tokenizer

CHAT_TEMPLATE_FILE = "chat_template.jinja"
PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; ``what`` says who needs it, for the error message."""
    return read_json_object(path, if_missing=f"{what} needs it", if_corrupt="restore it from the checkpoint's source")


def read_image_settings(directory: Path) -> ImageSettings:
    """The image settings of a folder's ``preprocessor_config.json``; the defaults when it has none."""
    path = directory / PREPROCESSOR_CONFIG_FILE
    if not path.is_file():
        return ImageSettings()
    return image_settings_from_hf(read_json(path, "the image settings"))


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def model_config(config: VLModelConfig, tokenizer: Tokenizer, dtype: str) -> dict:
    """``config.json``: ``Qwen2_5_VLConfig`` with the tokenizer's special ids and the exported dtype."""
    hf = to_hf_config(
        config,
        vision_start_token_id=tokenizer.vision_start_id,
        vision_end_token_id=tokenizer.vision_end_id,
        eos_token_id=tokenizer.im_end_id,
    )
    hf["dtype"] = dtype
    hf["text_config"]["dtype"] = dtype
    return hf


def generation_config(tokenizer: Tokenizer) -> dict:
    """Greedy by default; a turn ends at ``<|im_end|>``, a document at ``<|endoftext|>``."""
    return {
        "eos_token_id": [tokenizer.im_end_id, tokenizer.eod_id],
        "pad_token_id": tokenizer.pad_id,
        "do_sample": False,
    }


def write_hf_folder_files(
    directory: Path, config: VLModelConfig, tokenizer: Tokenizer, settings: ImageSettings, dtype: str
) -> list[str]:
    """Write every non-weight file into ``directory``; returns their names."""
    if settings.patch_size != config.vision.patch_size or settings.merge_size != config.vision.spatial_merge_size:
        raise ValueError(
            f"the run's image settings (patch {settings.patch_size}, merge {settings.merge_size}) disagree with the "
            f"ViT (patch {config.vision.patch_size}, merge {config.vision.spatial_merge_size}); the run record is inconsistent"
        )
    _write_json(directory / "config.json", model_config(config, tokenizer, dtype))
    _write_json(directory / "generation_config.json", generation_config(tokenizer))
    _write_json(directory / PREPROCESSOR_CONFIG_FILE, to_hf_preprocessor_config(settings))
    tokenizer.save_hf(str(directory))
    tokenizer_config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    # Older readers (transformers 4, vLLM) take the template from tokenizer_config.json; transformers 5 from the file.
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    tokenizer_config["processor_class"] = "Qwen2_5_VLProcessor"
    _write_json(tokenizer_config_path, tokenizer_config)
    (directory / CHAT_TEMPLATE_FILE).write_text(CHAT_TEMPLATE)
    return sorted(path.name for path in directory.iterdir() if not path.name.endswith(".safetensors") and path.is_file())
