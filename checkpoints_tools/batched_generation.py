"""Greedy generation with transformers from an exported folder, a batch of (images, prompt) rows at a time.

The model is ``Qwen2_5_VLForConditionalGeneration`` loaded from the folder; the inputs come from the folder's own
processor route (``hf_inputs.InputBuilder``), left-padded, so a row generates what it would generate alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from PIL import Image

from checkpoints_tools.hf_inputs import InputBuilder
from megatron_vl.data.images import ImageSettings

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Generated:
    text: str
    """The continuation, special tokens skipped."""
    token_ids: tuple[int, ...]
    """The tokens generated, up to and including the end-of-turn token when one came (no padding after it)."""

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


def load_hf_model(hf_dir: str | Path, *, device: str = "cpu", dtype: str = "fp32"):
    """``Qwen2_5_VLForConditionalGeneration`` of an exported folder, in eval mode on ``device``."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    hf_dir = Path(hf_dir)
    if not (hf_dir / "config.json").is_file():
        raise ValueError(f"{hf_dir} has no config.json: pass a folder written by checkpoints_tools.to_hf")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(hf_dir), dtype=DTYPES[dtype])
    return model.to(torch.device(device)).eval()


class BatchedGenerator:
    """The model and the input builder of one folder; ``generate`` answers a batch of rows greedily."""

    def __init__(
        self,
        hf_dir: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        fallback_image_settings: ImageSettings = ImageSettings(),
    ) -> None:
        from megatron_vl.progress import quiet_transformers_bars

        quiet_transformers_bars()
        self.model = load_hf_model(hf_dir, device=device, dtype=dtype)
        self.inputs = InputBuilder(hf_dir, fallback_image_settings=fallback_image_settings)
        self.device = torch.device(device)
        eos = self.model.generation_config.eos_token_id
        self._stop_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    @property
    def image_settings(self) -> ImageSettings:
        return self.inputs.image_settings

    def generate(
        self, images: list[list[Image.Image]], prompts: list[str], *, max_new_tokens: int, chat: bool = True
    ) -> list[Generated]:
        """The greedy continuation of each row (``images[i]`` then ``prompts[i]``)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        inputs = {key: value.to(self.device) for key, value in self.inputs(images, prompts, chat=chat).items()}
        with torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.inputs.tokenizer.pad_token_id
            )
        new_tokens = output[:, inputs["input_ids"].shape[1]:].cpu()
        texts = self.inputs.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [Generated(text, self._until_stop(row.tolist())) for text, row in zip(texts, new_tokens)]

    def _until_stop(self, tokens: list[int]) -> tuple[int, ...]:
        # A row that stopped early is padded to the batch's length after its end-of-turn token.
        end = next((position + 1 for position, token in enumerate(tokens) if token in self._stop_ids), len(tokens))
        return tuple(tokens[:end])
