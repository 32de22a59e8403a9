"""Model inputs built the way users of an exported folder build them: its processor, its chat template.

``AutoProcessor.from_pretrained`` builds ``Qwen2_5_VLProcessor``, whose video processor needs torchvision. Where
torchvision is missing the processor cannot be built at all, so the same inputs are assembled from the
folder's ``AutoTokenizer`` (chat template included) and ``AutoImageProcessor`` (its PIL backend), exactly as the
processor does: each ``<|image_pad|>`` becomes one per merged patch of its image.

A folder without a chat template or without ``preprocessor_config.json`` (a hub checkpoint assembled by hand,
an older export) still works: ours are used for what it lacks (our chat template, the given image settings),
and the route says so.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from checkpoints_tools.chat_template import CHAT_TEMPLATE
from checkpoints_tools.hf_folder_files import CHAT_TEMPLATE_FILE, PREPROCESSOR_CONFIG_FILE
from megatron_vl.data.images import ImageSettings
from megatron_vl.models.hf_config import to_hf_preprocessor_config

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def draw_image(width: int, height: int, seed: int) -> Image.Image:
    """A seeded picture of coloured rectangles and ellipses on a tinted background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(150, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], fill=colour)
    return image


def chat_messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def _has_chat_template(hf_dir: Path) -> bool:
    if (hf_dir / CHAT_TEMPLATE_FILE).is_file() or (hf_dir / "chat_template.json").is_file():
        return True
    tokenizer_config = hf_dir / "tokenizer_config.json"
    return tokenizer_config.is_file() and bool(json.loads(tokenizer_config.read_text()).get("chat_template"))


@contextlib.contextmanager
def processor_folder(hf_dir: str | Path, image_settings: ImageSettings) -> Iterator[tuple[Path, list[str]]]:
    """The folder to load the processor from, and notes on what of ours it uses: ``hf_dir`` itself when it has a
    chat template and a preprocessor config, else a temporary copy of its small files with ours filled in."""
    hf_dir = Path(hf_dir)
    has_template, has_preprocessor = _has_chat_template(hf_dir), (hf_dir / PREPROCESSOR_CONFIG_FILE).is_file()
    notes = []
    if not has_template:
        notes.append("megatron-vl's chat template (the folder has none)")
    if not has_preprocessor:
        notes.append(f"megatron-vl's image settings {image_settings.to_dict()} (the folder has no {PREPROCESSOR_CONFIG_FILE})")
    if not notes:
        yield hf_dir, notes
        return
    with tempfile.TemporaryDirectory(prefix="mvl-processor-") as temporary:
        folder = Path(temporary)
        for path in hf_dir.iterdir():
            if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
                shutil.copy(path, folder / path.name)
        if not has_template:
            (folder / CHAT_TEMPLATE_FILE).write_text(CHAT_TEMPLATE)
        if not has_preprocessor:
            (folder / PREPROCESSOR_CONFIG_FILE).write_text(json.dumps(to_hf_preprocessor_config(image_settings)))
        yield folder, notes


def load_processor(hf_dir: str | Path):
    """``AutoProcessor`` of the folder, or None where torchvision (needed by its video processor) is missing."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        return None
    return AutoProcessor.from_pretrained(str(hf_dir))


PRETRAINING_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
"""An image as pre-training documents hold it, without a chat turn around it."""


def multimodal_inputs(
    hf_dir: str | Path,
    image: Image.Image,
    prompt: str,
    *,
    chat: bool = True,
    fallback_image_settings: ImageSettings = ImageSettings(),
) -> tuple[dict[str, torch.Tensor], str]:
    """The processor's outputs (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``,
    ``image_grid_thw``) for one chat turn with ``image`` (or, with ``chat=False``, the image followed by
    ``prompt`` as in a pre-training document), and which route built them (naming anything of ours it used;
    ``fallback_image_settings`` stand in for a missing preprocessor config)."""
    with processor_folder(hf_dir, fallback_image_settings) as (folder, notes):
        inputs, route = _processor_inputs(folder, image, prompt, chat)
    if notes:
        route = f"{route}, with {' and '.join(notes)}"
    return inputs, route


def _processor_inputs(hf_dir: Path, image: Image.Image, prompt: str, chat: bool) -> tuple[dict[str, torch.Tensor], str]:
    processor = load_processor(hf_dir)
    if processor is not None:
        text = _prompt_text(processor, prompt, chat)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        return dict(inputs), "AutoProcessor"
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    image_processor = AutoImageProcessor.from_pretrained(str(hf_dir))
    pixels = image_processor(images=[image], return_tensors="pt")
    text = _prompt_text(tokenizer, prompt, chat)
    merged = int(pixels["image_grid_thw"][0].prod()) // image_processor.merge_size**2
    text = text.replace("<|image_pad|>", "<|image_pad|>" * merged, 1)
    encoded = tokenizer([text], return_tensors="pt")
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    inputs = {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        # The processor marks image tokens 1 (video 2): the model's M-RoPE positions are computed from it.
        "mm_token_type_ids": (encoded["input_ids"] == image_token).int(),
        "pixel_values": pixels["pixel_values"],
        "image_grid_thw": pixels["image_grid_thw"],
    }
    return inputs, "AutoTokenizer + AutoImageProcessor (no torchvision for AutoProcessor)"


def _prompt_text(templater, prompt: str, chat: bool) -> str:
    if not chat:
        return PRETRAINING_IMAGE + prompt
    return templater.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=False)
