"""Model inputs built the way users of an exported folder build them: its processor, its chat template.

``AutoProcessor.from_pretrained`` builds ``Qwen2_5_VLProcessor``, whose video processor needs torchvision. Where
torchvision is missing the processor cannot be built at all, so the same inputs are assembled from the
folder's ``AutoTokenizer`` (chat template included) and ``AutoImageProcessor`` (its PIL backend), exactly as the
processor does: each ``<|image_pad|>`` becomes one per merged patch of its image.

A folder without a chat template or without ``preprocessor_config.json`` (a hub checkpoint assembled by hand,
an older export) still works: ours are used for what it lacks (our chat template, the given image settings),
and the route says so.

``InputBuilder`` loads the processor once and builds batches of rows, each with any number of images, padded on
the left for generation; ``multimodal_inputs`` is one row of it.
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
from megatron_vl.models.hf_config import image_settings_from_hf, to_hf_preprocessor_config

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


def chat_messages(prompt: str, num_images: int = 1) -> list[dict]:
    """One user turn: ``num_images`` images, then ``prompt``."""
    return [{"role": "user", "content": [{"type": "image"}] * num_images + [{"type": "text", "text": prompt}]}]


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
IMAGE_PAD = "<|image_pad|>"


class InputBuilder:
    """The folder's processor (or tokenizer + image processor), loaded once, building left-padded batches.

    ``route`` says which processor route builds the inputs (naming anything of ours it uses) and
    ``image_settings`` are the pixel limits its image processor resizes with (``smart_resize``'s settings).
    """

    def __init__(self, hf_dir: str | Path, *, fallback_image_settings: ImageSettings = ImageSettings()) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        with processor_folder(hf_dir, fallback_image_settings) as (folder, notes):
            self.processor = load_processor(folder)
            if self.processor is None:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
                self.image_processor = AutoImageProcessor.from_pretrained(str(folder))
                self.route = "AutoTokenizer + AutoImageProcessor (no torchvision for AutoProcessor)"
            else:
                self.tokenizer, self.image_processor = self.processor.tokenizer, self.processor.image_processor
                self.route = "AutoProcessor"
            self.image_settings = image_settings_from_hf(json.loads((folder / PREPROCESSOR_CONFIG_FILE).read_text()))
        if notes:
            self.route = f"{self.route}, with {' and '.join(notes)}"
        # Generation continues every row from its last token, so the shorter prompts are padded on the left.
        self.tokenizer.padding_side = "left"

    def prompt_text(self, prompt: str, num_images: int, *, chat: bool = True) -> str:
        """The text of one row before image placeholders are expanded: a chat turn with ``num_images`` images
        then ``prompt``, or (``chat=False``) the images then ``prompt`` as in a pre-training document."""
        if not chat:
            return PRETRAINING_IMAGE * num_images + prompt
        messages = chat_messages(prompt, num_images)
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def __call__(
        self, images: list[list[Image.Image]], prompts: list[str], *, chat: bool = True
    ) -> dict[str, torch.Tensor]:
        """The processor's outputs (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``,
        ``image_grid_thw``) for a batch of rows, row i being ``images[i]`` then ``prompts[i]``."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} rows of images but {len(prompts)} prompts; give one prompt per row")
        texts = [self.prompt_text(prompt, len(row), chat=chat) for row, prompt in zip(images, prompts)]
        flat = [image for row in images for image in row]
        if self.processor is not None:
            return dict(self.processor(
                text=texts, images=flat or None, padding=True, padding_side="left", return_tensors="pt"
            ))
        inputs = {}
        if flat:
            pixels = self.image_processor(images=flat, return_tensors="pt")
            merged = (pixels["image_grid_thw"].prod(dim=1) // self.image_processor.merge_size**2).tolist()
            texts = _expand_image_pads(texts, merged)
            inputs = {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        image_token = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            # The processor marks image tokens 1 (video 2): the model's M-RoPE positions are computed from it.
            "mm_token_type_ids": (encoded["input_ids"] == image_token).int(),
            **inputs,
        }


def _expand_image_pads(texts: list[str], merged: list[int]) -> list[str]:
    """Each ``<|image_pad|>`` of ``texts``, in order, repeated once per merged patch of its image (as the processor
    does)."""
    counts = iter(merged)
    expanded = []
    for text in texts:
        parts = text.split(IMAGE_PAD)
        expanded.append(parts[0] + "".join(IMAGE_PAD * next(counts) + part for part in parts[1:]))
    assert next(counts, None) is None, "every image has one <|image_pad|> in the texts"
    return expanded


def multimodal_inputs(
    hf_dir: str | Path,
    image: Image.Image,
    prompt: str,
    *,
    chat: bool = True,
    fallback_image_settings: ImageSettings = ImageSettings(),
) -> tuple[dict[str, torch.Tensor], str]:
    """The processor's outputs for one chat turn with ``image`` (or, with ``chat=False``, the image followed by
    ``prompt`` as in a pre-training document), and which route built them (naming anything of ours it used;
    ``fallback_image_settings`` stand in for a missing preprocessor config)."""
    builder = InputBuilder(hf_dir, fallback_image_settings=fallback_image_settings)
    return builder([[image]], [prompt], chat=chat), builder.route
